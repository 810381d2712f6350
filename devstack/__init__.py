"""The embedded development stack that `make run` starts: Temporal dev server, SMTP
catcher and worker, each replaced by a real one when the settings name it."""

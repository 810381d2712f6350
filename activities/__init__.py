"""Side effects of journeys. Importing this package has no side effects; worker.py builds
the activity objects from settings, a session factory and a mailer."""

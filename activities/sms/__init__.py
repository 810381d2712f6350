"""Text messages: the provider (Twilio's Messages API), rendering for the medium, and the
send that happens once (docs/decisions/0015-sms.md)."""

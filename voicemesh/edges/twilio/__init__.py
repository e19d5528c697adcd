"""Phone calls through Twilio Media Streams (``voicemesh serve twilio``)."""

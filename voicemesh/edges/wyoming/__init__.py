"""A Wyoming protocol server over the mesh, for Home Assistant (``voicemesh serve wyoming``)."""

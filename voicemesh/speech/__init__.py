"""Speech primitives that both conversation engines import.

The orchestrator's session (``voicemesh.orchestrator``) and the realtime
service's cascade (``voicemesh.services.realtime``) hear, end turns and speak
with the same rules, so they live here, free of grpc and of either engine:

- ``vad``: the Silero VAD and the endpointer (utterance starts and ends);
- ``turn``: the ``TurnDetector`` policies, one per file, chosen by name;
- ``playout``: what of a reply the user heard (``cut``, ``heard_chars``) and
  the ``Pacer`` that sends audio at real time;
- ``segmenter``: text cut into sentences and clauses worth synthesizing.
"""

"""The transcription API (docs/api.md): OpenAI's and whisper-asr-webservice's routes on the web server.

Modules: ``formats`` (response bodies from a finished job's record).
"""

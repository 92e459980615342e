"""The backend's service: the process the add-on owns (`python -m backend.serve`) and the ops it
runs, which the command line runs in-process too.

- server.py: frames in on stdin, replies out on stdout, one worker thread, cancel, the queue.
- session.py: what the process keeps between requests (device, the loaded model, SAP networks).
- job.py: what a request may raise and what a running op may do (progress, cancel).
- fields.py, shapes.py: the steps ops share, from request fields and arrays to the model's space
  and back to a reply.
- ops/: one module per op; `ops.run` is the one entry, and the one place where bad geometry
  becomes a bad request.
"""

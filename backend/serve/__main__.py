"""`python -m backend.serve`: the backend process the Blender add-on starts."""
import sys

from backend.serve.server import main

sys.exit(main())

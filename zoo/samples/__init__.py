"""Sample media and generators for the demo and the examples, with the package data they use.

- ``gallery``: real photos (scikit-image's), the project's spoken clips (``speech/``, espeak-ng), stdlib texts;
- ``shapes``: point clouds of simple shapes generated with trimesh;
- ``clips``: frames encoded into a short video file (PyAV), for the demo's sample clips and the tests.

May import: ``zoo.errors`` and the input decoders; nothing imports samples but the apps and the tests.
"""

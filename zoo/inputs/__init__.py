"""Inputs: the decoders of untrusted images, audio and point clouds, and the limits they enforce.

Each decoder takes what a user passes (a path, bytes, an array, a PIL image...) and gives an array or an
image, or raises an ``InvalidInputError`` / ``InputTooLargeError`` naming the input and the limit: sizes are
checked before anything is allocated, special files are refused, parsers' own errors are typed.

May import: ``zoo.errors`` and each other. Nothing here knows about models.
"""

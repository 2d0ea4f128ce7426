"""Apps on top of the library: the ``zoo`` command line (``cli``) and the Gradio demo (``demo``).

May import anything; nothing in the library imports the apps.
"""

"""Private helpers shared by the PyTorch parts of the library (``lm`` and
``attribution``)."""

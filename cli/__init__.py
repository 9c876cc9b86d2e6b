"""The ``keras-itl`` command line: a thin click layer over the keras_itl library."""

"""What the networks are called and take, known without Keras: `nets` builds them with these,
and training reads them before TensorFlow loads (its --help, its image loading stay quick)."""

INPUT_SIZE = 256
ARCHS = ("meso4", "mesoinception4")
# The face's box in the aligned crop (screener.align.TEMPLATE): ear to ear, brow to chin with a
# margin. x0, y0, x1, y1 in pixels of the 256x256 crop.
FACE_WINDOW = (32, 24, 224, 232)

"""The gallery's order: from a first inversion to the theory (sphinx-gallery sort key)."""

ORDER = [
    "plot_first_inversion.py",
    "plot_oracle.py",
    "plot_layered_bp.py",
    "plot_gradient_descent.py",
    "plot_trained_inversion.py",
    "plot_inpainting.py",
    "plot_noise.py",
    "plot_compressed_sensing.py",
    "plot_grid_search.py",
    "plot_uniqueness.py",
    "plot_pretrained_samples.py",
]


class ExampleOrder:
    """Sort key: the position in ``ORDER``; files not listed come last, by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename):
        return (ORDER.index(filename), filename) if filename in ORDER else (len(ORDER), filename)

    def __repr__(self):
        return f"<{self.__class__.__name__}>"

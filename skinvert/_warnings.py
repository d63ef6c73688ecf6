"""``warn_user``: a warning located at the caller's line, outside skinvert and scikit-learn."""

import os
import sys
import warnings

__all__ = ["warn_user"]


def _skip_dirs():
    import sklearn

    here = os.path.dirname(os.path.abspath(__file__))
    return tuple(
        os.path.dirname(os.path.abspath(m.__file__)) + os.sep for m in (sklearn,)
    ) + (here + os.sep,)


def _stacklevel():
    """The stacklevel of the first frame outside skinvert, scikit-learn and joblib."""
    skip = _skip_dirs()
    frame = sys._getframe(2)  # the caller of warn_user
    level = 2
    while frame is not None:
        fname = os.path.abspath(frame.f_code.co_filename)
        if not fname.startswith(skip) and "joblib" not in fname:
            return level
        frame = frame.f_back
        level += 1
    return 2


def warn_user(message, category):
    """``warnings.warn`` pointed at the first frame outside skinvert and scikit-learn:
    the user's line, also through ``fit_transform``, ``score``, a Pipeline or
    GridSearchCV."""
    warnings.warn(message, category, stacklevel=_stacklevel())

"""Sample media shipped with the package (see README.md beside this file)."""

import pathlib

CRICKET = pathlib.Path(__file__).resolve().parent / "v_CricketShot_g04_c01_rgb.gif"

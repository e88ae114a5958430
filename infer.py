"""Stylize photos: see `python infer.py --help`."""

from stylize.cli import main

if __name__ == "__main__":
    main()

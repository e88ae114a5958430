"""Train a decoder: see `python train.py --help`."""

from stylize.train import main

if __name__ == "__main__":
    main()

"""Train a decoder: see `python train.py --help`."""

from stylize.training.loop import main

if __name__ == "__main__":
    main()

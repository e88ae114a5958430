import torch
from helpers import make_image

from stylize.tools.flaws import blotch, lattice_peaks, mesh


def gradient(h: int = 96, w: int = 128) -> torch.Tensor:
    """A smooth photo: a sky's glow from left to right."""
    return torch.stack([torch.linspace(0.3, 0.8, w).expand(h, w)] * 3)


def test_a_dark_blot_on_a_smooth_photo_is_a_blotch_the_painting_does_not_explain():
    photo, painting = gradient(), make_image(64, 64, 1)
    blotted = photo.clone()
    blotted[:, 30:50, 40:70] = 0.0  # darker than the painting's darkest percentile, contrast at its rim
    assert blotch(photo, photo, painting) == 0.0
    assert blotch(blotted, photo, painting) > 0.005
    dark_painting = painting.clone()
    dark_painting[:, :20] = 0.0  # a painting this dark explains the blot's darkness, not its rim
    assert 0 < blotch(blotted, photo, dark_painting) < blotch(blotted, photo, painting)


def test_a_fine_grid_at_the_decoder_s_periods_is_a_mesh():
    photo, painting = make_image(96, 128, 2), make_image(64, 64, 3)
    grid = photo.clone()
    grid[:, ::8, :] *= 0.95  # faint lines every 8 px, as the decoder's upsampling leaves them
    grid[:, :, ::8] *= 0.95
    assert mesh(photo, photo, painting) == 0.0
    assert lattice_peaks(grid) > lattice_peaks(photo) + 0.2 and mesh(grid, photo, painting) > 0.2
    shifted = torch.roll(photo, 3, dims=-1)  # the same content elsewhere: no lattice
    assert mesh(shifted, photo, painting) < 0.1

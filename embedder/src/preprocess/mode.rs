//! Which preprocessing the embedder runs. The tutorial's is the default and
//! the only one whose vectors match PyTorch's; the fast one trades that for
//! decoding JPEGs at a fraction of their size.

use std::{fmt, str::FromStr};

/// The preprocessing of every image of one embedder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// PIL + torchvision to the bit.
    #[default]
    Exact,
    /// JPEGs decoded by libjpeg-turbo at the smallest DCT scale (1/8, 1/4
    /// or 1/2) whose short side is still at least 256, then the same resize, crop
    /// and normalisation; other formats as in `Exact`. Its vectors differ
    /// from the tutorial's, so a collection never mixes the two (see
    /// `crate::fingerprint`).
    Fast,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exact => "exact",
            Mode::Fast => "fast",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exact" => Ok(Mode::Exact),
            "fast" => Ok(Mode::Fast),
            other => Err(format!("unknown preprocessing {other:?} (exact or fast)")),
        }
    }
}

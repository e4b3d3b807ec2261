//! What one image may cost: every per-image limit, its default, and the flag
//! that changes it, in one place. Each is checked from the file's header
//! before a pixel is decoded, so a hostile file costs a header parse.

/// Per-image limits. `config.rs` takes its flag defaults from [`Limits::DEFAULT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded file.
    pub max_bytes: usize,
    /// Largest declared width × height.
    pub max_pixels: u64,
    /// Largest declared width or height.
    pub max_side: u64,
    /// Largest memory the decode of one image may take (decoder output in
    /// its own pixel type, the RGB copy, a progressive JPEG's coefficients).
    pub max_decoded_bytes: u64,
    /// Most scans in one JPEG (a progressive file has about 10; thousands
    /// are a CPU bomb).
    pub max_jpeg_scans: u32,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_bytes: 32 << 20,
        // PIL's own decompression-bomb threshold: any real photo passes.
        max_pixels: 89_478_485,
        // Far above any camera; an aspect ratio past about 350,000:1 is
        // refused anyway, since Pillow cannot resize it (see resize.rs).
        max_side: 1_000_000,
        // A 16-bit RGBA PNG at the pixel limit (8 bytes a pixel) plus its
        // RGB copy (3) fits.
        max_decoded_bytes: 1 << 30,
        max_jpeg_scans: 100,
    };
}

/// Largest decode buffer a preprocessing thread keeps for its next image
/// (a 16-megapixel RGB image fits): reusing it saves the page faults of a
/// fresh one. Memory held while idle is at most workers × this.
pub const RETAINED_DECODE_BYTES: usize = 48 << 20;

/// Which limit an image went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Bytes,
    Pixels,
    Side,
    DecodedBytes,
    JpegScans,
    /// The embedder's whole memory budget (`--memory-budget-bytes`): an image
    /// that alone needs more could never be admitted.
    MemoryBudget,
}

impl Limit {
    /// The flag that raises it (each has an `IMGSEARCH_EMBEDDER_*` twin).
    pub fn flag(self) -> &'static str {
        match self {
            Limit::Bytes => "--max-image-bytes",
            Limit::Pixels => "--max-image-pixels",
            Limit::Side => "--max-image-side",
            Limit::DecodedBytes => "--max-image-decoded-bytes",
            Limit::JpegScans => "--max-jpeg-scans",
            Limit::MemoryBudget => "--memory-budget-bytes",
        }
    }

    /// What is measured, for messages.
    pub fn measure(self) -> &'static str {
        match self {
            Limit::Bytes => "bytes",
            Limit::Pixels => "pixels",
            Limit::Side => "pixels on its longest side",
            Limit::DecodedBytes => "bytes to decode",
            Limit::MemoryBudget => "bytes to hold in memory (a share of the budget)",
            Limit::JpegScans => "JPEG scans",
        }
    }
}

//! A walk over a JPEG's markers, reading no pixel: how many scans it has
//! and how its components are sampled.
//!
//! Why: libjpeg-turbo decodes a file of several scans (progressive, or
//! sequential with one scan per component) into a whole-image buffer of DCT
//! coefficients, 2 bytes per sample of each component, and makes a pass over
//! it per scan. Both costs must be known before admission, and a file of
//! thousands of scans refused before it burns minutes of CPU.

/// What the markers say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JpegLayout {
    /// Start-of-scan markers seen (counting stops at the caller's cap).
    pub scans: u32,
    /// Each component's horizontal and vertical sampling factors, from the
    /// frame header (empty when none was found).
    pub sampling: Vec<(u8, u8)>,
}

impl JpegLayout {
    /// Walks `bytes`, counting at most `max_scans` scans. Malformed input
    /// stops the walk; the decoder then reports what is wrong with it.
    pub fn read(bytes: &[u8], max_scans: u32) -> JpegLayout {
        let mut layout = JpegLayout::default();
        let mut i = 2; // after SOI
        while i + 1 < bytes.len() && layout.scans < max_scans {
            if bytes[i] != 0xFF {
                return layout;
            }
            let marker = bytes[i + 1];
            match marker {
                // Fill byte before a marker.
                0xFF => {
                    i += 1;
                    continue;
                }
                // End of image.
                0xD9 => return layout,
                // Markers without a length.
                0x01 | 0xD0..=0xD7 => {
                    i += 2;
                    continue;
                }
                _ => {}
            }
            let Some(len) = bytes
                .get(i + 2..i + 4)
                .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            else {
                return layout;
            };
            let segment = bytes
                .get(i + 4..(i + 2 + len).min(bytes.len()))
                .unwrap_or(&[]);
            i += 2 + len;
            match marker {
                // SOF0..SOF15, less DHT (C4), JPG (C8) and DAC (CC).
                0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                    layout.sampling = segment
                        .get(6..)
                        .unwrap_or(&[])
                        .chunks_exact(3)
                        .map(|c| (c[1] >> 4, c[1] & 0x0F))
                        .collect();
                }
                0xDA => {
                    layout.scans += 1;
                    i = skip_entropy_coded(bytes, i);
                }
                _ => {}
            }
        }
        layout
    }

    /// Bytes of the coefficient buffer libjpeg-turbo allocates for a
    /// `width` × `height` image of this layout: none for a single scan.
    pub fn coefficient_bytes(&self, width: u64, height: u64) -> u64 {
        if self.scans <= 1 {
            return 0;
        }
        let (hmax, vmax) = self
            .sampling
            .iter()
            .fold((1u64, 1u64), |(h, v), &(hs, vs)| {
                (h.max(u64::from(hs)), v.max(u64::from(vs)))
            });
        // Each component is padded to whole 8×8 blocks of whole MCUs;
        // 16 samples of slack per side covers that.
        let samples = |size: u64, factor: u8, max: u64| {
            (size * u64::from(factor.max(1))).div_ceil(max) + 16 * max
        };
        let per_component: u64 = self
            .sampling
            .iter()
            .map(|&(h, v)| samples(width, h, hmax) * samples(height, v, vmax))
            .sum();
        // Four full-size components is the most a JPEG libjpeg decodes has.
        let bound = if self.sampling.is_empty() {
            4 * (width + 16) * (height + 16)
        } else {
            per_component
        };
        2 * bound
    }
}

/// The index of the first marker after the entropy-coded data that starts at
/// `i` (a 0xFF there is followed by 0x00 as stuffing, or by a restart marker).
fn skip_entropy_coded(bytes: &[u8], mut i: usize) -> usize {
    while i + 1 < bytes.len() {
        if bytes[i] == 0xFF && bytes[i + 1] != 0 && !(0xD0..=0xD7).contains(&bytes[i + 1]) {
            return i;
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(body);
        s
    }

    /// SOI, a 4:2:0 frame header, `scans` scans of stuffed data, EOI.
    fn jpeg(scans: usize) -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8];
        f.extend(segment(0xE0, b"JFIF\0\xFF\xDA\xFF\xDA"));
        f.extend(segment(
            0xC2,
            &[8, 0, 16, 0, 32, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
        ));
        for _ in 0..scans {
            f.extend(segment(0xDA, &[1, 1, 0, 0, 63, 0]));
            f.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD3, 0x56]);
        }
        f.extend_from_slice(&[0xFF, 0xD9]);
        f
    }

    #[test]
    fn scans_are_counted_past_stuffing_restarts_and_app_segments() {
        let layout = JpegLayout::read(&jpeg(7), 100);
        assert_eq!(layout.scans, 7);
        assert_eq!(layout.sampling, [(2, 2), (1, 1), (1, 1)]);
    }

    #[test]
    fn counting_stops_at_the_cap() {
        assert_eq!(JpegLayout::read(&jpeg(5000), 101).scans, 101);
    }

    #[test]
    fn a_single_scan_needs_no_coefficient_buffer() {
        let layout = JpegLayout::read(&jpeg(1), 100);
        assert_eq!(layout.coefficient_bytes(4000, 3000), 0);
        // 4:2:0 at several scans: 1.5 samples a pixel, 2 bytes each, plus padding.
        let bytes = JpegLayout::read(&jpeg(10), 100).coefficient_bytes(4000, 3000);
        assert!((36_000_000..37_000_000).contains(&bytes), "{bytes}");
    }
}

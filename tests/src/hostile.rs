//! Hostile images, made on the fly (never checked in): extreme aspect
//! ratios, headers declaring huge sizes over tiny bodies, a progressive JPEG
//! of thousands of scans, an animation of thousands of frames, a 16-bit RGBA
//! PNG just under the pixel limit, truncated and garbage files.

use std::io::Cursor;

use image::{
    codecs::{
        gif::GifEncoder,
        png::{CompressionType, FilterType, PngEncoder},
    },
    Delay, Frame, ImageBuffer, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage,
};
use imgsearch_proto::v1::ErrorKind;

/// One hostile file and what the embedder must answer: a vector (`None`) or
/// a per-item error of this kind.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub bytes: Vec<u8>,
    pub expect: Option<ErrorKind>,
}

fn case(name: &str, bytes: Vec<u8>, expect: Option<ErrorKind>) -> Case {
    Case {
        name: name.into(),
        bytes,
        expect,
    }
}

/// The whole hostile set.
pub fn set(truncated_jpeg: Vec<u8>) -> Vec<Case> {
    use ErrorKind::{ImageTooLarge as TooLarge, InvalidImage as Invalid};
    vec![
        case("strip-1x20000", png(&noise(1, 20_000, 1)), None),
        case("strip-20000x1", png(&noise(20_000, 1, 2)), None),
        case(
            "strip-1x1000000",
            png(&noise(1, 1_000_000, 3)),
            Some(TooLarge),
        ),
        case(
            "strip-1000000x1",
            png(&noise(1_000_000, 1, 4)),
            Some(TooLarge),
        ),
        case(
            "png-declares-100000x100000",
            png_header_only(100_000, 100_000, 8, 2),
            Some(TooLarge),
        ),
        case(
            "png-rgba16-declares-9000x9000",
            png_header_only(9_000, 9_000, 16, 6),
            Some(Invalid),
        ),
        case(
            "gif-declares-65535x65535",
            gif_header_only(65_535, 65_535),
            Some(TooLarge),
        ),
        case(
            "bmp-declares-30000x30000",
            bmp_header_only(30_000, 30_000),
            Some(TooLarge),
        ),
        case(
            "bmp-declares-9000x9000",
            bmp_header_only(9_000, 9_000),
            Some(Invalid),
        ),
        case(
            "tiff-declares-100000x100000",
            tiff_header_only(100_000, 100_000),
            Some(TooLarge),
        ),
        case(
            "tiff-declares-9000x9000",
            tiff_header_only(9_000, 9_000),
            Some(Invalid),
        ),
        case(
            "webp-declares-16383x16383",
            webp_header_only(16_383, 16_383),
            Some(TooLarge),
        ),
        case("jpeg-5000-scans", jpeg_scan_bomb(5_000), Some(TooLarge)),
        case("gif-10000-frames", animated_gif(10_000), None),
        case("png-rgba16-9459x9459", rgba16_png(9_459, 9_459), None),
        case("jpeg-truncated", truncated_jpeg, Some(Invalid)),
        case("garbage", noise(64, 64, 5).into_raw(), Some(Invalid)),
    ]
}

/// Deterministic RGB noise (xorshift).
pub fn noise(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    ImageBuffer::from_fn(width, height, |_, _| {
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        };
        Rgb([next(), next(), next()])
    })
}

/// `img` as a PNG.
pub fn png<P>(img: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
    P: image::Pixel + image::PixelWithColorType,
{
    encode(img, ImageFormat::Png)
}

/// `img` in `format`.
pub fn encode<P>(img: &ImageBuffer<P, Vec<P::Subpixel>>, format: ImageFormat) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
    P: image::Pixel + image::PixelWithColorType,
{
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(png: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    png.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    png.extend(&body);
    png.extend(crc32(&body).to_be_bytes());
}

/// A PNG that declares `w`×`h` pixels of `depth` bits and colour type
/// `color` over a token IDAT: a decompression bomb's header without the
/// gigabytes behind it.
pub fn png_header_only(w: u32, h: u32, depth: u8, color: u8) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([depth, color, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(&mut png, b"IDAT", b"\x78\x9c\x03\x00\x00\x00\x00\x01");
    png_chunk(&mut png, b"IEND", b"");
    png
}

/// A GIF whose screen and first frame declare `w`×`h`, with a few bytes of data.
pub fn gif_header_only(w: u16, h: u16) -> Vec<u8> {
    let mut gif = b"GIF89a".to_vec();
    gif.extend(w.to_le_bytes());
    gif.extend(h.to_le_bytes());
    // A 2-colour global table.
    gif.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    gif.extend([0x2C, 0, 0, 0, 0]);
    gif.extend(w.to_le_bytes());
    gif.extend(h.to_le_bytes());
    gif.extend([0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
    gif
}

/// A 24-bit BMP that declares `w`×`h` over 16 bytes of pixels.
pub fn bmp_header_only(w: i32, h: i32) -> Vec<u8> {
    let mut bmp = b"BM".to_vec();
    bmp.extend((14u32 + 40 + 16).to_le_bytes());
    bmp.extend(0u32.to_le_bytes());
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(w.to_le_bytes());
    bmp.extend(h.to_le_bytes());
    bmp.extend(1u16.to_le_bytes());
    bmp.extend(24u16.to_le_bytes());
    for v in [0u32, 0, 2835, 2835, 0, 0] {
        bmp.extend(v.to_le_bytes());
    }
    bmp.extend([0x7F; 16]);
    bmp
}

/// An 8-bit grayscale TIFF that declares `w`×`h` in one strip of 16 bytes.
pub fn tiff_header_only(w: u32, h: u32) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    let entries: [(u16, u16, u32); 9] = [
        (256, LONG, w),   // ImageWidth
        (257, LONG, h),   // ImageLength
        (258, SHORT, 8),  // BitsPerSample
        (259, SHORT, 1),  // Compression: none
        (262, SHORT, 1),  // PhotometricInterpretation: BlackIsZero
        (273, LONG, 122), // StripOffsets: right after the IFD
        (277, SHORT, 1),  // SamplesPerPixel
        (278, LONG, h),   // RowsPerStrip
        (279, LONG, 16),  // StripByteCounts
    ];
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        tiff.extend(tag.to_le_bytes());
        tiff.extend(kind.to_le_bytes());
        tiff.extend(1u32.to_le_bytes());
        if kind == SHORT {
            tiff.extend((value as u16).to_le_bytes());
            tiff.extend([0, 0]);
        } else {
            tiff.extend(value.to_le_bytes());
        }
    }
    tiff.extend(0u32.to_le_bytes());
    assert_eq!(tiff.len(), 122);
    tiff.extend([0x40; 16]);
    tiff
}

/// A lossless WebP that declares `w`×`h` (each at most 16,383: image-webp reads 16,384 as 0) over a few bytes.
pub fn webp_header_only(w: u32, h: u32) -> Vec<u8> {
    let bits: u32 = (w - 1) | ((h - 1) << 14);
    let mut vp8l = vec![0x2F];
    vp8l.extend(bits.to_le_bytes());
    vp8l.extend([0x55; 11]);
    let mut webp = b"RIFF".to_vec();
    webp.extend(((4 + 8 + vp8l.len()) as u32).to_le_bytes());
    webp.extend(b"WEBPVP8L");
    webp.extend((vp8l.len() as u32).to_le_bytes());
    webp.extend(vp8l);
    webp
}

/// A baseline JPEG of smooth gradients: the cost of a large photo to
/// decode, in a small file.
pub fn smooth_jpeg(width: usize, height: usize) -> Vec<u8> {
    jpeg(width, height, false)
}

fn jpeg(width: usize, height: usize, progressive: bool) -> Vec<u8> {
    let pixels: Vec<u8> = (0..width * height)
        .flat_map(|i| [(i % width / 8) as u8, (i / width / 8) as u8, 128])
        .collect();
    let img = turbojpeg::Image {
        pixels: pixels.as_slice(),
        width,
        pitch: width * 3,
        height,
        format: turbojpeg::PixelFormat::RGB,
    };
    let mut c = turbojpeg::Compressor::new().expect("compressor");
    c.set_progressive(progressive).expect("progressive");
    c.compress_to_vec(img).expect("compress")
}

/// A real progressive JPEG whose last scan is repeated until it has about
/// `scans` of them: each is a pass over the image for a decoder. Smooth
/// content keeps each refinement scan to a few bytes, so that thousands fit
/// in a file under the byte limit.
pub fn jpeg_scan_bomb(scans: usize) -> Vec<u8> {
    let jpeg = jpeg(2048, 2048, true);
    let last_scan = jpeg
        .windows(2)
        .rposition(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    let end = jpeg.len() - 2; // EOI
    let mut bomb = jpeg[..end].to_vec();
    for _ in 0..scans {
        bomb.extend_from_slice(&jpeg[last_scan..end]);
    }
    bomb.extend_from_slice(&[0xFF, 0xD9]);
    bomb
}

/// A GIF of `frames` 512×512 frames (the same flat frame's bytes repeated,
/// a kilobyte each): decoding them all would cost thousands of times the
/// first.
pub fn animated_gif(frames: usize) -> Vec<u8> {
    let mut one = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut one);
        let frame = RgbaImage::from_pixel(512, 512, Rgba([200, 40, 90, 255]));
        enc.encode_frame(Frame::from_parts(
            frame,
            0,
            0,
            Delay::from_numer_denom_ms(100, 1),
        ))
        .expect("encode frame");
    }
    // Header and logical screen (13 bytes), then the global colour table
    // when the screen's flags say there is one.
    let flags = one[10];
    let table = if flags & 0x80 != 0 {
        3 << ((flags & 7) + 1)
    } else {
        0
    };
    let (head, body) = one.split_at(13 + table);
    let body = &body[..body.len() - 1]; // less the trailer
    let mut gif = head.to_vec();
    for _ in 0..frames {
        gif.extend_from_slice(body);
    }
    gif.push(0x3B);
    gif
}

/// A 16-bit RGBA PNG of large flat tiles (it compresses to a few MB).
pub fn rgba16_png(w: u32, h: u32) -> Vec<u8> {
    let img: ImageBuffer<Rgba<u16>, Vec<u16>> = ImageBuffer::from_fn(w, h, |x, y| {
        let (tx, ty) = ((x / 1024) as u16, (y / 1024) as u16);
        Rgba([tx * 6000, ty * 6000, (tx + ty) * 3000, 65_535 - ty * 1000])
    });
    let mut out = Vec::new();
    img.write_with_encoder(PngEncoder::new_with_quality(
        &mut out,
        CompressionType::Default,
        FilterType::Sub,
    ))
    .expect("encode 16-bit PNG");
    out
}

//! Captured frames turned into raw pixels for the encoder: base64 and PNG decoded in Rust,
//! on the blocking thread pool, so that FFmpeg does not decode every frame a second time and
//! no browser waits for a decode.

use std::io::Cursor;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Pixel layout of raw frames, as FFmpeg's `-pix_fmt` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// 8-bit RGB.
    Rgb24,
    /// 8-bit RGB with alpha (what Chromium's screenshots carry).
    Rgba,
}

impl Layout {
    /// FFmpeg's name for it.
    pub fn pix_fmt(self) -> &'static str {
        match self {
            Layout::Rgb24 => "rgb24",
            Layout::Rgba => "rgba",
        }
    }

    fn channels(self) -> usize {
        match self {
            Layout::Rgb24 => 3,
            Layout::Rgba => 4,
        }
    }
}

/// One frame's pixels, rows top to bottom, no padding.
#[derive(Debug)]
pub(super) struct RawFrame {
    /// How the pixels are laid out.
    pub layout: Layout,
    /// `width × height × channels` bytes.
    pub data: bytes::Bytes,
    /// Thread time spent decoding it.
    pub decode_time: Duration,
    /// Colours multiplied by alpha (a canvas read back as a `VideoFrame`); screenshots are
    /// straight.
    pub premultiplied: bool,
}

impl RawFrame {
    /// The same pixels in `layout` (alpha dropped or made opaque): every frame of a segment
    /// goes to the encoder in the first frame's layout.
    pub fn into_layout(self, layout: Layout) -> RawFrame {
        if self.layout == layout {
            return self;
        }
        let data: Vec<u8> = match layout {
            Layout::Rgb24 => self
                .data
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
            Layout::Rgba => self
                .data
                .chunks_exact(3)
                .flat_map(|p| [p[0], p[1], p[2], 255])
                .collect(),
        };
        RawFrame {
            layout,
            data: data.into(),
            decode_time: self.decode_time,
            premultiplied: self.premultiplied,
        }
    }

    /// The same RGBA pixels with straight (not premultiplied) colours, as PNG, ProRes 4444
    /// and VP9 with alpha store them: each colour divided by its alpha, rounded.
    pub fn unpremultiplied(self) -> RawFrame {
        if !self.premultiplied || self.layout != Layout::Rgba {
            return self;
        }
        let mut data = self.data.to_vec();
        for p in data.chunks_exact_mut(4) {
            let a = u32::from(p[3]);
            if a != 0 && a != 255 {
                for c in &mut p[..3] {
                    *c = ((u32::from(*c) * 255 + a / 2) / a).min(255) as u8;
                }
            }
        }
        RawFrame {
            data: data.into(),
            premultiplied: false,
            ..self
        }
    }
}

/// Raw RGBA pixels of frame `f` sent by the page, which must be `width × height`.
pub(super) fn raw(px: bytes::Bytes, f: u64, width: u32, height: u32) -> Result<RawFrame, String> {
    let want = width as usize * height as usize * 4;
    if px.len() != want {
        return Err(format!(
            "capture of frame {f} has {} bytes of pixels, a {width}x{height} RGBA frame has {want}",
            px.len()
        ));
    }
    Ok(RawFrame {
        layout: Layout::Rgba,
        data: px,
        decode_time: Duration::ZERO,
        premultiplied: true,
    })
}

/// Decodes a base64 PNG of frame `f`, which must be `width × height`.
pub(super) fn decode(b64: &str, f: u64, width: u32, height: u32) -> Result<RawFrame, String> {
    let started = Instant::now();
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("capture of frame {f} is not base64: {e}"))?;
    let bad = |e: png::DecodingError| format!("capture of frame {f} is not a valid PNG: {e}");
    let mut decoder = png::Decoder::new(Cursor::new(png.as_slice()));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().map_err(bad)?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| format!("capture of frame {f} is too large to decode"))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(bad)?;
    if (info.width, info.height) != (width, height) {
        return Err(format!(
            "capture of frame {f} is {}x{}, the video is {width}x{height}",
            info.width, info.height
        ));
    }
    buf.truncate(info.buffer_size());
    let (layout, data) = match info.color_type {
        png::ColorType::Rgb => (Layout::Rgb24, buf),
        png::ColorType::Rgba => (Layout::Rgba, buf),
        png::ColorType::Grayscale => (Layout::Rgb24, buf.iter().flat_map(|&g| [g, g, g]).collect()),
        png::ColorType::GrayscaleAlpha => (
            Layout::Rgba,
            buf.chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
        ),
        other => {
            return Err(format!(
                "capture of frame {f} has colour type {other:?} after expansion"
            ))
        }
    };
    debug_assert_eq!(
        data.len(),
        width as usize * height as usize * layout.channels()
    );
    Ok(RawFrame {
        layout,
        data: data.into(),
        decode_time: started.elapsed(),
        premultiplied: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_of(width: u32, height: u32, color: png::ColorType, pixels: &[u8]) -> String {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(color);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().expect("header");
            w.write_image_data(pixels).expect("data");
        }
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    #[test]
    fn decodes_rgba_and_rgb_exactly() {
        let rgba: Vec<u8> = (0..2 * 2 * 4).map(|i| i as u8 * 7).collect();
        let f = decode(&png_of(2, 2, png::ColorType::Rgba, &rgba), 0, 2, 2).expect("rgba");
        assert_eq!((f.layout, &f.data[..]), (Layout::Rgba, &rgba[..]));
        let rgb = f.into_layout(Layout::Rgb24);
        assert_eq!(
            rgb.data,
            rgba.chunks(4)
                .flat_map(|p| p[..3].to_vec())
                .collect::<Vec<_>>()
        );
        let back = rgb.into_layout(Layout::Rgba);
        assert!(back.data.chunks(4).all(|p| p[3] == 255));
    }

    #[test]
    fn refuses_wrong_size_and_garbage() {
        let px = vec![0u8; 4 * 4 * 3];
        let err = decode(&png_of(4, 4, png::ColorType::Rgb, &px), 7, 2, 2).unwrap_err();
        assert!(err.contains("frame 7 is 4x4, the video is 2x2"), "{err}");
        assert!(decode("!!!", 1, 2, 2).unwrap_err().contains("not base64"));
        let not_png = base64::engine::general_purpose::STANDARD.encode(b"hello");
        assert!(decode(&not_png, 1, 2, 2)
            .unwrap_err()
            .contains("not a valid PNG"));
    }

    #[test]
    fn raw_frames_must_be_whole_rgba_frames() {
        let f = raw(bytes::Bytes::from(vec![7u8; 2 * 3 * 4]), 0, 2, 3).expect("raw");
        assert_eq!(f.layout, Layout::Rgba);
        let err = raw(bytes::Bytes::from(vec![7u8; 5]), 9, 2, 3).unwrap_err();
        assert!(err.contains("frame 9 has 5 bytes"), "{err}");
    }

    #[test]
    fn premultiplied_read_back_is_made_straight() {
        let px = vec![0u8, 0, 128, 128, 10, 20, 30, 255, 0, 0, 0, 0, 64, 0, 32, 64];
        let f = raw(bytes::Bytes::from(px), 0, 4, 1)
            .expect("raw")
            .unpremultiplied();
        assert_eq!(
            &f.data[..],
            &[0, 0, 255, 128, 10, 20, 30, 255, 0, 0, 0, 0, 255, 0, 128, 64]
        );
    }

    #[test]
    fn gray_becomes_rgb() {
        let f = decode(&png_of(1, 1, png::ColorType::Grayscale, &[9]), 0, 1, 1).expect("gray");
        assert_eq!((f.layout, &f.data[..]), (Layout::Rgb24, &[9u8, 9, 9][..]));
    }
}

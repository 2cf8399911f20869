//! What a job writes: a video, an animated GIF, an image sequence or one still image.

use serde::{Deserialize, Serialize};

/// The kind of a job's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// A video file (segments joined by bytes or by FFmpeg's concat demuxer).
    #[default]
    Video,
    /// An animated GIF: one palette for the whole video, parts joined by their bytes.
    Gif,
    /// One image per frame, named by the composition's frame index.
    Images,
    /// One image of one frame.
    Still,
}

impl OutputKind {
    /// Whether the output is one or more image files (no video encoder).
    pub fn is_image(self) -> bool {
        matches!(self, OutputKind::Images | OutputKind::Still)
    }
}

/// Formats of image outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// PNG: lossless, keeps alpha.
    Png,
    /// JPEG: lossy, no alpha.
    Jpeg,
    /// WebP: lossy (lossless at quality 100), keeps alpha.
    Webp,
}

impl ImageFormat {
    /// The format a file extension names (`png`, `jpg`/`jpeg`, `webp`; any case).
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "png" => Some(ImageFormat::Png),
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            "webp" => Some(ImageFormat::Webp),
            _ => None,
        }
    }

    /// The extension files of this format get in storage.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Webp => "webp",
        }
    }

    /// Whether the format keeps an alpha channel.
    pub fn carries_alpha(self) -> bool {
        matches!(self, ImageFormat::Png | ImageFormat::Webp)
    }
}

/// Most frames a GIF's palette is computed from.
pub const PALETTE_SAMPLES: u64 = 32;

/// The frames a GIF's palette is computed from: up to [`PALETTE_SAMPLES`], evenly spread
/// over the job's frames (the middle of each of as many equal stretches).
pub fn palette_samples(frames: super::FrameRange) -> Vec<u64> {
    let len = frames.len();
    let n = len.min(PALETTE_SAMPLES);
    (0..n)
        .map(|i| frames.start + ((2 * i + 1) * len) / (2 * n))
        .collect()
}

/// Quality of JPEG and WebP images when none is given (1-100).
pub const DEFAULT_IMAGE_QUALITY: u32 = 90;

/// What the job writes, beside the picture settings in `video`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Video, GIF, image sequence or still.
    #[serde(default)]
    pub kind: OutputKind,
    /// Transparent capture: the page's default background is transparent and frames keep
    /// their alpha channel, which the output must carry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alpha: bool,
    /// Image format of `images` and `still` outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ImageFormat>,
    /// File name of each image of an `images` output, with one printf-style frame number
    /// (`%d` or `%0Nd`, e.g. `%05d.png`), which is the composition's frame index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Quality of JPEG and WebP images, 1 (smallest) to 100 (best; WebP lossless).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u32>,
    /// GIF: the loop count written in the file (0 = forever); absent = plays once.
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_count: Option<u32>,
    /// Video: also deliver the finished output as an HLS rendition (`-o out.m3u8`): VOD
    /// playlists next to the byte-joined MP4, addressing its fragments by byte range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hls: bool,
}

impl OutputSpec {
    /// Whether this is the default (an opaque video), which specs leave out.
    pub fn is_default(&self) -> bool {
        *self == OutputSpec::default()
    }

    /// The quality in effect for JPEG and WebP.
    pub fn quality(&self) -> u32 {
        self.quality.unwrap_or(DEFAULT_IMAGE_QUALITY)
    }

    /// The name of frame `frame`'s file: the pattern with the frame number in it; a still
    /// (no pattern) is `output.<ext>`.
    pub fn file_name(&self, frame: u64) -> String {
        match (&self.pattern, self.format) {
            (Some(p), _) => FramePattern::parse(p)
                .map(|fp| fp.name(frame))
                .unwrap_or_else(|_| format!("{frame}.png")),
            (None, f) => format!("output.{}", f.unwrap_or(ImageFormat::Png).extension()),
        }
    }
}

/// A file name holding one printf-style frame number: `%d` or `%0Nd` (N ≤ 12), with `%%`
/// for a literal percent sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePattern {
    prefix: String,
    width: usize,
    suffix: String,
}

impl FramePattern {
    /// Whether `name` holds a frame number placeholder at all (`%d`, `%5d`, `%05d`).
    pub fn is_pattern(name: &str) -> bool {
        let mut rest = name;
        while let Some(i) = rest.find('%') {
            let tail = &rest[i + 1..];
            if let Some(t) = tail.strip_prefix('%') {
                rest = t;
                continue;
            }
            let digits = tail.chars().take_while(|c| c.is_ascii_digit()).count();
            if tail[digits..].starts_with('d') {
                return true;
            }
            rest = tail;
        }
        false
    }

    /// Parses a file name (no `/`) with exactly one frame number.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.contains('/') || name.contains('\\') {
            return Err(format!("{name:?} is a path; the pattern is a file name"));
        }
        let mut prefix = String::new();
        let mut suffix = String::new();
        let mut width = None;
        let mut rest = name;
        while let Some(i) = rest.find('%') {
            let into = if width.is_none() {
                &mut prefix
            } else {
                &mut suffix
            };
            into.push_str(&rest[..i]);
            let tail = &rest[i + 1..];
            if let Some(t) = tail.strip_prefix('%') {
                into.push('%');
                rest = t;
                continue;
            }
            let digits = tail.chars().take_while(|c| c.is_ascii_digit()).count();
            if !tail[digits..].starts_with('d') {
                return Err(format!(
                    "{name:?}: a % must start the frame number (%d or %05d) or be written %%"
                ));
            }
            if width.is_some() {
                return Err(format!("{name:?} holds two frame numbers; give one"));
            }
            let w: usize = if digits == 0 {
                0
            } else {
                tail[..digits]
                    .parse()
                    .map_err(|_| format!("{name:?}: bad frame number width"))?
            };
            if w > 12 {
                return Err(format!("{name:?}: a frame number wider than 12 digits"));
            }
            width = Some(w);
            rest = &tail[digits + 1..];
        }
        let Some(width) = width else {
            return Err(format!(
                "{name:?} holds no frame number; put %05d (or %d) where it goes, e.g. frames/%05d.png"
            ));
        };
        suffix.push_str(rest);
        Ok(Self {
            prefix,
            width,
            suffix,
        })
    }

    /// The file name of `frame`.
    pub fn name(&self, frame: u64) -> String {
        format!(
            "{}{:0width$}{}",
            self.prefix,
            frame,
            self.suffix,
            width = self.width
        )
    }

    /// The extension after the frame number (`png` for `%05d.png`), if any.
    pub fn extension(&self) -> Option<&str> {
        self.suffix.rsplit_once('.').map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_name_frames_like_printf() {
        let p = FramePattern::parse("%05d.png").unwrap();
        assert_eq!(p.name(30), "00030.png");
        assert_eq!(p.name(123_456), "123456.png");
        assert_eq!(p.extension(), Some("png"));
        let p = FramePattern::parse("shot-%d-100%%.jpg").unwrap();
        assert_eq!(p.name(7), "shot-7-100%.jpg");
        assert!(FramePattern::is_pattern("f%04d.webp"));
        assert!(!FramePattern::is_pattern("100%%.png"));
        assert!(!FramePattern::is_pattern("out.png"));
        for bad in ["a.png", "%d-%d.png", "%s.png", "50%.png", "a/%d.png"] {
            assert!(FramePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn palette_samples_spread_over_the_frames() {
        use crate::spec::FrameRange;
        assert_eq!(palette_samples(FrameRange::new(10, 13)), [10, 11, 12]);
        let s = palette_samples(FrameRange::new(0, 300));
        assert_eq!(s.len(), 32);
        assert_eq!((s[0], s[31]), (4, 295));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn default_output_is_left_out_of_specs() {
        assert!(OutputSpec::default().is_default());
        let o = OutputSpec {
            kind: OutputKind::Still,
            format: Some(ImageFormat::Jpeg),
            ..Default::default()
        };
        assert_eq!(o.file_name(3), "output.jpg");
        let json = serde_json::to_string(&o).unwrap();
        assert_eq!(json, r#"{"kind":"still","format":"jpeg"}"#);
    }
}

//! GIF block structure, for joining GIF parts by their bytes.
//!
//! A GIF is a header (signature, logical screen descriptor, global colour table), blocks
//! (extensions and images) and a trailer byte. Parts encoded with the same palette have the
//! same header, so a chunked GIF is one header, the loop extension, every part's blocks in
//! order and the trailer. Each frame's delay lives in the graphic control extension before
//! its image; a part is encoded without knowing where it sits in the video, so its delays
//! are rewritten here from the frame's place on the job's timeline: the delay of frame `n`
//! (counted from the job's first frame) is `⌊(n+1)·100/fps⌋ − ⌊n·100/fps⌋` centiseconds,
//! which sum to the exact length (60 frames at 30 fps: 200 cs).

use crate::spec::Fps;

/// Why bytes are not a GIF this module can split.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a GIF part: {0}")]
pub struct GifError(String);

fn bad(m: impl Into<String>) -> GifError {
    GifError(m.into())
}

/// A GIF cut into its header and its frames' blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GifPart {
    /// Signature, logical screen descriptor and global colour table.
    pub header: Vec<u8>,
    /// Every block of the frames, graphic control extensions with delays on the job's
    /// timeline; no application extensions, no trailer.
    pub blocks: Vec<u8>,
    /// Images found.
    pub frames: u64,
}

/// The delay of frame `n` of a job (from its first frame), in centiseconds.
pub fn delay_cs(n: u64, fps: Fps) -> u16 {
    let at = |k: u64| u128::from(k) * 100 * u128::from(fps.den) / u128::from(fps.num.max(1));
    (at(n + 1) - at(n)).min(u128::from(u16::MAX)) as u16
}

/// The NETSCAPE2.0 application extension: loop `count` times (0 = forever).
pub fn loop_extension(count: u16) -> [u8; 19] {
    let [lo, hi] = count.to_le_bytes();
    [
        0x21, 0xFF, 0x0B, b'N', b'E', b'T', b'S', b'C', b'A', b'P', b'E', b'2', b'.', b'0', 0x03,
        0x01, lo, hi, 0x00,
    ]
}

/// The trailer byte that ends a GIF.
pub const TRAILER: u8 = 0x3B;

/// Reads data sub-blocks from `at`; returns the offset after the terminator.
fn skip_sub_blocks(b: &[u8], mut at: usize) -> Result<usize, GifError> {
    loop {
        let n = *b.get(at).ok_or_else(|| bad("data ends inside a block"))? as usize;
        at += 1 + n;
        if n == 0 {
            return Ok(at);
        }
        if at > b.len() {
            return Err(bad("data ends inside a block"));
        }
    }
}

/// Splits `bytes` (a whole GIF) whose first frame is frame `first` of the job.
pub fn split(bytes: &[u8], first: u64, fps: Fps) -> Result<GifPart, GifError> {
    if bytes.len() < 13 || !(bytes.starts_with(b"GIF89a") || bytes.starts_with(b"GIF87a")) {
        return Err(bad("no GIF signature"));
    }
    let packed = bytes[10];
    let mut at = 13;
    if packed & 0x80 != 0 {
        at += 3 << ((packed & 0x07) + 1);
    }
    if at > bytes.len() {
        return Err(bad("the global colour table is cut short"));
    }
    let mut header = bytes[..at].to_vec();
    // The joined GIF is GIF89a whatever the part says (it has extensions).
    header[..6].copy_from_slice(b"GIF89a");
    let mut blocks = Vec::with_capacity(bytes.len() - at);
    let mut frames = 0u64;
    let mut control_pending = false;
    loop {
        match *bytes.get(at).ok_or_else(|| bad("no trailer"))? {
            TRAILER => break,
            0x21 => {
                let label = *bytes
                    .get(at + 1)
                    .ok_or_else(|| bad("extension cut short"))?;
                let end = skip_sub_blocks(bytes, at + 2)?;
                match label {
                    // Graphic control: the next image's delay, set from its frame.
                    0xF9 => {
                        if end - at != 8 || bytes[at + 2] != 4 {
                            return Err(bad("a graphic control extension of the wrong size"));
                        }
                        let mut gce = bytes[at..end].to_vec();
                        gce[4..6].copy_from_slice(&delay_cs(first + frames, fps).to_le_bytes());
                        blocks.extend_from_slice(&gce);
                        control_pending = true;
                    }
                    // Application extensions (loop count) belong to the joined file's head.
                    0xFF => {}
                    _ => blocks.extend_from_slice(&bytes[at..end]),
                }
                at = end;
            }
            0x2C => {
                let desc = bytes
                    .get(at..at + 10)
                    .ok_or_else(|| bad("image descriptor cut short"))?;
                let mut data = at + 10;
                if desc[9] & 0x80 != 0 {
                    data += 3 << ((desc[9] & 0x07) + 1);
                }
                // LZW minimum code size, then the image data.
                let end = skip_sub_blocks(bytes, data + 1)?;
                if !control_pending {
                    // Every frame gets a delay: a control block with no disposal, no
                    // transparency.
                    let [lo, hi] = delay_cs(first + frames, fps).to_le_bytes();
                    blocks.extend_from_slice(&[0x21, 0xF9, 0x04, 0x00, lo, hi, 0x00, 0x00]);
                }
                blocks.extend_from_slice(&bytes[at..end]);
                control_pending = false;
                frames += 1;
                at = end;
            }
            other => return Err(bad(format!("unknown block 0x{other:02x} at byte {at}"))),
        }
    }
    Ok(GifPart {
        header,
        blocks,
        frames,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_sum_to_the_exact_length() {
        let thirty = Fps::new(30, 1);
        let d: Vec<u16> = (0..6).map(|n| delay_cs(n, thirty)).collect();
        assert_eq!(d, [3, 3, 4, 3, 3, 4]);
        let total: u32 = (0..60).map(|n| u32::from(delay_cs(n, thirty))).sum();
        assert_eq!(total, 200);
        let ntsc = Fps::new(30000, 1001);
        let total: u32 = (0..30000).map(|n| u32::from(delay_cs(n, ntsc))).sum();
        assert_eq!(total, 100_100);
    }

    /// A 1×1 GIF with `n` frames, as an encoder would write it (with a loop extension).
    fn tiny(n: usize) -> Vec<u8> {
        let mut g = b"GIF89a".to_vec();
        g.extend_from_slice(&[1, 0, 1, 0, 0x80, 0, 0]); // GCT of 2 colours
        g.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
        g.extend_from_slice(&loop_extension(0));
        for i in 0..n {
            g.extend_from_slice(&[0x21, 0xF9, 0x04, 0x04, 9, 0, 0, 0]);
            g.extend_from_slice(&[0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0]);
            g.extend_from_slice(&[2, 2, 0x44, i as u8, 0]);
        }
        g.push(TRAILER);
        g
    }

    #[test]
    fn parts_split_into_one_header_and_retimed_blocks() {
        let a = split(&tiny(2), 0, Fps::new(30, 1)).unwrap();
        let b = split(&tiny(3), 2, Fps::new(30, 1)).unwrap();
        assert_eq!(a.header, b.header);
        assert_eq!((a.frames, b.frames), (2, 3));
        // Delays 3, 3 then 4, 3, 3: frame 2 of the job is the third.
        let delays = |p: &GifPart| -> Vec<u16> {
            p.blocks
                .windows(3)
                .enumerate()
                .filter(|(_, w)| w == &[0x21, 0xF9, 0x04])
                .map(|(i, _)| u16::from_le_bytes([p.blocks[i + 4], p.blocks[i + 5]]))
                .collect()
        };
        assert_eq!(delays(&a), [3, 3]);
        assert_eq!(delays(&b), [4, 3, 3]);
        // No loop extension in the blocks: it belongs to the joined head.
        assert!(!a.blocks.windows(8).any(|w| w == b"NETSCAPE"));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(split(b"GIF89a", 0, Fps::new(30, 1)).is_err());
        assert!(split(b"\x89PNG\r\n\x1a\n....", 0, Fps::new(30, 1)).is_err());
        let mut cut = tiny(2);
        cut.truncate(cut.len() - 4);
        assert!(split(&cut, 0, Fps::new(30, 1)).is_err());
    }
}

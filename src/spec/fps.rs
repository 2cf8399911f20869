use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A frame rate as an exact rational (`30000/1001`), never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Fps {
    /// Numerator (frames).
    pub num: u32,
    /// Denominator (seconds).
    pub den: u32,
}

impl Fps {
    /// Creates a rate; validation rejects zero parts.
    pub const fn new(num: u32, den: u32) -> Self {
        Self { num, den }
    }

    /// The rate reduced to lowest terms.
    pub fn reduced(self) -> Self {
        let g = gcd(self.num as u64, self.den as u64).max(1) as u32;
        Self::new(self.num / g, self.den / g)
    }

    /// Frames per second as a float, for display and ETA only.
    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den.max(1) as f64
    }

    /// Seconds covered by `frames` frames, as a float (display only).
    pub fn seconds(self, frames: u64) -> f64 {
        frames as f64 * self.den as f64 / self.num.max(1) as f64
    }

    /// A container timescale in which every frame boundary is an integer tick.
    ///
    /// Prefers a multiple of 90 kHz (the broadcast clock) so that common rates get familiar
    /// timescales (30000/1001 → 90000, 3003 ticks per frame); falls back to the numerator.
    pub fn timescale(self) -> u32 {
        let r = self.reduced();
        let num = r.num as u64;
        let l = num / gcd(num, 90_000) * 90_000;
        if l <= u32::MAX as u64 {
            l as u32
        } else {
            r.num
        }
    }

    /// Ticks of [`Fps::timescale`] per frame.
    pub fn ticks_per_frame(self) -> u64 {
        let r = self.reduced();
        self.timescale() as u64 * r.den as u64 / r.num as u64
    }
}

impl fmt::Display for Fps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

impl FromStr for Fps {
    type Err = String;

    /// Accepts `30`, `30000/1001` and decimal rates such as `29.97` or `23.976`, which are
    /// read as the NTSC rationals they abbreviate.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || {
            format!("invalid frame rate {s:?}: use an integer (30), a ratio (30000/1001) or a decimal (29.97)")
        };
        if let Some((n, d)) = s.split_once('/') {
            let num = n.trim().parse::<u32>().map_err(|_| bad())?;
            let den = d.trim().parse::<u32>().map_err(|_| bad())?;
            return Ok(Fps::new(num, den));
        }
        if let Ok(num) = s.parse::<u32>() {
            return Ok(Fps::new(num, 1));
        }
        let x: f64 = s.parse().map_err(|_| bad())?;
        if !(x.is_finite() && x > 0.0) {
            return Err(bad());
        }
        // NTSC-style rates: n*1000/1001 within rounding of the decimal given.
        let ntsc = (x * 1001.0 / 1000.0).round();
        if ntsc >= 1.0 && (ntsc * 1000.0 / 1001.0 - x).abs() < 0.005 {
            return Ok(Fps::new(ntsc as u32 * 1000, 1001));
        }
        let num = (x * 1000.0).round();
        if (num / 1000.0 - x).abs() > 1e-9 || num > u32::MAX as f64 {
            return Err(bad());
        }
        Ok(Fps::new(num as u32, 1000).reduced())
    }
}

impl<'de> Deserialize<'de> for Fps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Parts {
            num: u32,
            den: u32,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Parts(Parts),
            Int(u32),
            Text(String),
        }
        match Repr::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "fps must be {\"num\":N,\"den\":D}, an integer or a string such as \"30000/1001\"",
            )
        })? {
            Repr::Parts(p) => Ok(Fps::new(p.num, p.den)),
            Repr::Int(n) => Ok(Fps::new(n, 1)),
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_rates() {
        assert_eq!("30".parse::<Fps>().unwrap(), Fps::new(30, 1));
        assert_eq!("30000/1001".parse::<Fps>().unwrap(), Fps::new(30000, 1001));
        assert_eq!("29.97".parse::<Fps>().unwrap(), Fps::new(30000, 1001));
        assert_eq!("23.976".parse::<Fps>().unwrap(), Fps::new(24000, 1001));
        assert_eq!("12.5".parse::<Fps>().unwrap(), Fps::new(25, 2));
        assert!("abc".parse::<Fps>().is_err());
        assert!("-3".parse::<Fps>().is_err());
    }

    #[test]
    fn timescale_has_integer_frame_ticks() {
        for fps in [
            Fps::new(30000, 1001),
            Fps::new(24, 1),
            Fps::new(25, 1),
            Fps::new(60, 1),
            Fps::new(7, 3),
            Fps::new(24000, 1001),
        ] {
            let t = fps.timescale() as u64;
            let r = fps.reduced();
            assert_eq!(t * r.den as u64 % r.num as u64, 0, "{fps}");
        }
        assert_eq!(Fps::new(30000, 1001).timescale(), 90000);
        assert_eq!(Fps::new(30000, 1001).ticks_per_frame(), 3003);
    }

    #[test]
    fn deserializes_all_forms() {
        let f: Fps = serde_json::from_str(r#"{"num":30000,"den":1001}"#).unwrap();
        assert_eq!(f, Fps::new(30000, 1001));
        let f: Fps = serde_json::from_str("24").unwrap();
        assert_eq!(f, Fps::new(24, 1));
        let f: Fps = serde_json::from_str(r#""60000/1001""#).unwrap();
        assert_eq!(f, Fps::new(60000, 1001));
    }
}

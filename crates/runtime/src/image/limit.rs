//! Caps on what one image import may make the host read, decompress and write. Archives come
//! from the network and the daemon runs as root: without caps a small gzip bomb fills the disk.
//!
//! The decompressed streams (an archive gzipped as a whole, each layer) are read through a
//! [`Meter`]: past a limit it fails the read, and [`Meter::over`] says which limit tripped, so
//! the import reports [`super::ImageError::TooLarge`] rather than the tar crate's "truncated".

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

/// Below this many decompressed bytes the ratio is not checked: small files (a config, a
/// tiny layer of zeros) compress far better than whole images do.
pub const RATIO_FLOOR_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLimits {
    /// Bytes of the archive's tar stream (after gunzip when the archive is gzipped as a whole).
    pub archive_bytes: u64,
    /// Bytes of all layers' uncompressed tars together.
    pub unpacked_bytes: u64,
    /// Entries (files, directories, links) of all layers together.
    pub entries: u64,
    /// Highest ratio of decompressed to compressed bytes, checked past [`RATIO_FLOOR_BYTES`].
    /// Real images compress 2-10x; a gzip bomb about 1000x.
    pub gzip_ratio: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        ImageLimits {
            archive_bytes: 8 << 30,
            unpacked_bytes: 16 << 30,
            entries: 1_000_000,
            gzip_ratio: 100,
        }
    }
}

/// What is left of an import's [`ImageLimits`] for its remaining layers.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub bytes: u64,
    pub entries: u64,
    pub gzip_ratio: u64,
}

impl Budget {
    pub fn new(limits: &ImageLimits) -> Budget {
        Budget {
            bytes: limits.unpacked_bytes,
            entries: limits.entries,
            gzip_ratio: limits.gzip_ratio,
        }
    }
}

/// The error for a stream that went past `over`; `what` names the stream, `flag` the host
/// option that raises its byte limit.
pub fn too_large(what: &str, over: Over, flag: &str) -> super::ImageError {
    super::ImageError::TooLarge(match over {
        Over::Bytes(max) if max % (1 << 20) == 0 => format!(
            "{what}: over the limit of {} MiB (raise it with the host's {flag})",
            max >> 20
        ),
        Over::Bytes(max) => format!(
            "{what}: over the limit of {max} bytes (raise it with the host's {flag})"
        ),
        Over::Ratio(ratio) => format!(
            "{what}: decompresses to over {ratio} times its compressed size, like a gzip bomb (raise --max-gzip-ratio for such an image)"
        ),
        Over::Entries(max) => format!(
            "{what}: over the limit of {max} entries (raise it with the host's --max-image-entries)"
        ),
    })
}

/// Which limit a stream went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Bytes(u64),
    Ratio(u64),
    Entries(u64),
}

/// Counts the bytes read through it (the compressed side of a decoder); the count stays
/// readable while the decoder owns the reader.
pub struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Counted<R> {
    pub fn new(inner: R) -> (Counted<R>, Rc<Cell<u64>>) {
        let count = Rc::new(Cell::new(0));
        (
            Counted {
                inner,
                count: count.clone(),
            },
            count,
        )
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// What a [`Meter`] leaves readable after it was handed to a decoder or the tar crate.
#[derive(Clone, Default)]
pub struct MeterState {
    read: Rc<Cell<u64>>,
    over: Rc<Cell<Option<Over>>>,
}

impl MeterState {
    /// The limit the stream went past, if it did.
    pub fn over(&self) -> Option<Over> {
        self.over.get()
    }

    pub fn read(&self) -> u64 {
        self.read.get()
    }
}

/// A decompressed stream with a byte budget and, when it has a compressed side, a ratio cap.
pub struct Meter<R> {
    inner: R,
    max: u64,
    compressed: Option<(Rc<Cell<u64>>, u64)>,
    state: MeterState,
}

impl<R: Read> Meter<R> {
    /// `max` bytes at most; with `compressed` (the compressed side's count and the ratio cap),
    /// also at most ratio times what was read on that side once past the floor.
    pub fn new(
        inner: R,
        max: u64,
        compressed: Option<(Rc<Cell<u64>>, u64)>,
    ) -> (Meter<R>, MeterState) {
        let state = MeterState::default();
        let meter = Meter {
            inner,
            max,
            compressed,
            state: state.clone(),
        };
        (meter, state)
    }

    fn check(&self, read: u64) -> Option<Over> {
        if read > self.max {
            return Some(Over::Bytes(self.max));
        }
        match &self.compressed {
            Some((count, ratio))
                if read > RATIO_FLOOR_BYTES && read > count.get().max(1).saturating_mul(*ratio) =>
            {
                Some(Over::Ratio(*ratio))
            }
            _ => None,
        }
    }
}

impl<R: Read> Read for Meter<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.state.over.get().is_none() {
            let n = self.inner.read(buf)?;
            let read = self.state.read.get() + n as u64;
            self.state.read.set(read);
            self.state.over.set(self.check(read));
            if self.state.over.get().is_none() {
                return Ok(n);
            }
        }
        Err(std::io::Error::other("image limit reached"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_past_its_budget_fails_and_says_so() {
        let data = vec![0u8; 1000];
        let (mut r, state) = Meter::new(data.as_slice(), 999, None);
        let e = std::io::copy(&mut r, &mut std::io::sink());
        assert!(e.is_err());
        assert_eq!(state.over(), Some(Over::Bytes(999)));
        let (mut r, state) = Meter::new(data.as_slice(), 1000, None);
        assert_eq!(std::io::copy(&mut r, &mut std::io::sink()).unwrap(), 1000);
        assert_eq!(state.over(), None);
        assert_eq!(state.read(), 1000);
    }

    #[test]
    fn a_gzip_bomb_trips_the_ratio_just_past_the_floor() {
        use flate2::{write::GzEncoder, Compression};
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            gz.write_all(&zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        let (counted, count) = Counted::new(bomb.as_slice());
        let (mut r, state) = Meter::new(
            flate2::read::GzDecoder::new(counted),
            u64::MAX,
            Some((count, 100)),
        );
        assert!(std::io::copy(&mut r, &mut std::io::sink()).is_err());
        assert_eq!(state.over(), Some(Over::Ratio(100)));
        assert!(
            state.read() < RATIO_FLOOR_BYTES + (1 << 20),
            "stopped at the floor"
        );
    }
}

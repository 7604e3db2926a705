//! A layer's compression and its decoder, shared by pulls (blobs from any
//! source) and docker-archive layers served uncompressed.

use std::io::{BufRead, Read};

/// A layer blob's compression, told by its first bytes (media types lie:
/// Docker's "tar.gzip" and uncompressed layers served as gzip exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Look at the magic number.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// containers/storage's number for it in layers.json.
    pub fn storage_code(self) -> i32 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 2,
            Compression::Zstd => 4,
        }
    }

    /// The uncompressed stream of `r`. An enum rather than a boxed trait
    /// object, so the decoder is `Send` exactly when `r` is.
    pub fn decode<R: BufRead>(self, r: R) -> std::io::Result<Decoder<R>> {
        Ok(match self {
            Compression::None => Decoder::Plain(r),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(r))),
            Compression::Zstd => Decoder::Zstd(zstd::stream::read::Decoder::with_buffer(r)?),
        })
    }
}

/// A reader that undoes a [`Compression`].
pub enum Decoder<R: BufRead> {
    /// Nothing to undo.
    Plain(R),
    /// gzip, every member of a multi-member stream (boxed: its state
    /// is large, and one allocation per layer costs nothing).
    Gzip(Box<flate2::bufread::MultiGzDecoder<R>>),
    /// zstd.
    Zstd(zstd::stream::read::Decoder<'static, R>),
}

impl<R: BufRead> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_magic_number_tells_and_the_decoder_undoes_it() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"etc/\0"), Compression::None);
        let text = b"layer bytes ".repeat(1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &text).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&text[..], 1).unwrap();
        for blob in [&text[..], &gz[..], &zst[..]] {
            let mut out = Vec::new();
            Compression::sniff(blob).decode(blob).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, text);
        }
    }
}

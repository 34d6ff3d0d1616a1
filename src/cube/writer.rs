//! Chunk writes: encoding chunks with the cube's codecs, uploading them, and recording a
//! tile's chunks in a session only once the whole tile has been uploaded.
//!
//! Uploading stores chunk objects but references nothing; a tile whose read fails halfway
//! leaves unreferenced objects behind and no chunk in any commit.

use std::num::NonZeroU64;
use std::sync::Arc;

use bytes::Bytes;
use icechunk::format::manifest::ChunkPayload;
use icechunk::format::{ChunkIndices, Path};
use icechunk::session::Session;
use zarrs::array::{Array, ArrayBuilder, IntoArrayBytes, data_type};
use zarrs::array::{ArrayToBytesCodecTraits, CodecOptions};
use zarrs::storage::store::MemoryStore;

use super::{CubeError, Layout, LayoutError};

/// Builder of level `k`'s data variable (0: the cube itself): same type, fill and codecs,
/// the level's shape and chunks; shared by `init` and the chunk encoders so the two can
/// never disagree.
pub(crate) fn level_builder(layout: &Layout, k: usize) -> ArrayBuilder {
    let (shape, chunks) = layout.level_shape(k);
    let mut b = ArrayBuilder::new(
        shape.to_vec(),
        chunks.to_vec(),
        data_type::uint8(),
        layout.fill_value,
    );
    b.bytes_to_bytes_codecs(vec![Arc::new(zarrs::array::codec::ZstdCodec::new(
        layout.zstd_level_of(k),
        false,
    ))]);
    b.dimension_names(Some(["year", "y", "x"]));
    b
}

/// Encodes one chunk of the data variable with the cube's codec chain.
pub struct ChunkEncoder {
    array: Array<MemoryStore>,
    shape: Vec<NonZeroU64>,
    fill: u8,
    options: CodecOptions,
}

/// An encoded chunk: `None` when the chunk is all fill value and is not stored.
pub type EncodedChunk = Option<Bytes>;

impl ChunkEncoder {
    pub fn new(layout: &Layout) -> Result<Self, CubeError> {
        Self::for_level(layout, 0)
    }

    /// The encoder of level `k`'s chunks (0: the cube itself).
    pub fn for_level(layout: &Layout, k: usize) -> Result<Self, CubeError> {
        let array = level_builder(layout, k)
            .build(Arc::new(MemoryStore::new()), &layout.level_path(k))
            .map_err(|e| CubeError::icechunk("chunk encoder", e))?;
        let shape = layout
            .level_shape(k)
            .1
            .iter()
            .map(|&n| NonZeroU64::new(n).ok_or(CubeError::Layout(LayoutError::EmptyChunk)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            array,
            shape,
            fill: layout.fill_value,
            options: CodecOptions::default(),
        })
    }

    /// Number of bytes of one decoded chunk.
    pub fn chunk_len(&self) -> usize {
        self.shape.iter().map(|n| n.get() as usize).product()
    }

    /// Encode one chunk's pixels (row-major), or `None` if every pixel is the fill value.
    pub fn encode(&self, pixels: &[u8]) -> Result<EncodedChunk, CubeError> {
        if pixels.iter().all(|&p| p == self.fill) {
            return Ok(None);
        }
        let dt = self.array.data_type();
        let bytes = pixels
            .into_array_bytes(dt)
            .map_err(|e| CubeError::icechunk("encoding a chunk", e))?;
        let encoded = self
            .array
            .codecs()
            .encode(
                bytes,
                &self.shape,
                dt,
                self.array.fill_value(),
                &self.options,
            )
            .map_err(|e| CubeError::icechunk("encoding a chunk", e))?;
        // The codec's buffer is sized for the worst case (about the chunk's raw size); keep
        // only the encoded bytes. A chunk that compresses below Icechunk's inline threshold
        // is held in the session until the commit: at the worst-case size, a tile of uniform
        // land would keep its whole raw size in memory.
        let mut bytes = encoded.into_owned();
        bytes.shrink_to_fit();
        Ok(Some(Bytes::from(bytes)))
    }

    /// Decode one stored chunk back to its pixels (row-major).
    pub fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, CubeError> {
        let dt = self.array.data_type();
        let decoded = self
            .array
            .codecs()
            .decode(
                std::borrow::Cow::Borrowed(bytes),
                &self.shape,
                dt,
                self.array.fill_value(),
                &self.options,
            )
            .map_err(|e| CubeError::icechunk("decoding a chunk", e))?;
        let pixels = decoded
            .into_fixed()
            .map_err(|e| CubeError::icechunk("decoding a chunk", e))?
            .into_owned();
        if pixels.len() != self.chunk_len() {
            return Err(LayoutError::ChunkSize {
                len: pixels.len(),
                expected: self.chunk_len(),
            }
            .into());
        }
        Ok(pixels)
    }
}

/// The chunks of one tile, uploaded and waiting to be recorded in a session: its level-0
/// chunks and those of the overview levels written with it (level `k` in array `k`).
#[derive(Debug, Default)]
pub struct TileChunks {
    refs: Vec<(usize, ChunkIndices, Option<ChunkPayload>)>,
    /// Encoded bytes uploaded.
    pub bytes: u64,
}

impl TileChunks {
    /// Note an already uploaded chunk of level 0.
    pub fn push(&mut self, coords: [u64; 3], payload: Option<(ChunkPayload, u64)>) {
        self.push_level(0, coords, payload)
    }

    /// Note an already uploaded chunk of level `k` (0: the cube itself).
    pub fn push_level(&mut self, k: usize, coords: [u64; 3], payload: Option<(ChunkPayload, u64)>) {
        let idx = ChunkIndices(coords.iter().map(|&c| c as u32).collect());
        match payload {
            Some((p, len)) => {
                self.bytes += len;
                self.refs.push((k, idx, Some(p)));
            }
            None => self.refs.push((k, idx, None)),
        }
    }

    /// Chunks of the tile, all levels (referenced or removed).
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// Whether the tile has no chunk at all.
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Level-0 chunks that hold data: what coverage counts of the tile.
    pub fn stored(&self) -> usize {
        self.refs
            .iter()
            .filter(|(k, _, p)| *k == 0 && p.is_some())
            .count()
    }

    /// Record every chunk of the tile in the session: data chunks are referenced, all-fill
    /// chunks are removed (so rewriting a tile leaves nothing of its previous contents).
    /// `paths[k]` is level `k`'s array.
    ///
    /// Each array is looked up once for the whole tile (`set_chunk_refs`, patched into
    /// icechunk: `patches/README.md`), so recording a tile costs the same in an empty cube
    /// and in one holding thousands of manifests.
    pub async fn record(self, session: &mut Session, paths: &[Path]) -> Result<(), CubeError> {
        let mut by_level: Vec<Vec<(ChunkIndices, Option<ChunkPayload>)>> =
            vec![Vec::new(); paths.len()];
        for (k, idx, payload) in self.refs {
            let refs = by_level
                .get_mut(k)
                .ok_or(LayoutError::ChunkOfNoLevel { level: k })?;
            refs.push((idx, payload));
        }
        for (path, refs) in paths.iter().zip(by_level) {
            if refs.is_empty() {
                continue;
            }
            session
                .set_chunk_refs(path.clone(), refs)
                .await
                .map_err(|e| CubeError::icechunk("recording a tile's chunks", e))?;
        }
        Ok(())
    }
}

type ChunkWriter = Box<
    dyn FnOnce(
            Bytes,
        ) -> icechunk::compat::IcechunkBoxFuture<
            'static,
            icechunk::session::SessionResult<ChunkPayload>,
        > + Send,
>;

/// An upload ready to run without holding the session.
pub struct PreparedUpload {
    writer: ChunkWriter,
    coords: [u64; 3],
}

/// Prepare the upload of one chunk; the session is only needed for this short step.
pub fn prepare_upload(
    session: &Session,
    path: &Path,
    coords: [u64; 3],
) -> Result<PreparedUpload, CubeError> {
    let idx = ChunkIndices(coords.iter().map(|&c| c as u32).collect());
    let writer = session
        .get_chunk_writer(path, &idx)
        .map_err(|e| CubeError::icechunk("preparing an upload", e))?;
    Ok(PreparedUpload {
        writer: Box::new(writer),
        coords,
    })
}

impl PreparedUpload {
    /// Upload the chunk; the returned payload references it (with its encoded length).
    /// An all-fill chunk uploads nothing.
    pub async fn run(self, chunk: EncodedChunk) -> Result<Option<(ChunkPayload, u64)>, CubeError> {
        let Some(bytes) = chunk else {
            return Ok(None);
        };
        let len = bytes.len() as u64;
        let payload = (self.writer)(bytes)
            .await
            .map_err(|e| CubeError::icechunk(format!("uploading chunk {:?}", self.coords), e))?;
        Ok(Some((payload, len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Grid;
    use crate::preset::Preset;

    fn small_layout() -> Layout {
        let p = Preset::glad();
        Layout::new(&p, &Grid::from_preset(&p, Some(40)).unwrap())
    }

    #[test]
    fn encoded_chunks_hold_no_more_memory_than_their_bytes() {
        let layout = small_layout();
        let enc = ChunkEncoder::new(&layout).unwrap();
        let uniform = enc.encode(&vec![30u8; 1600]).unwrap().unwrap();
        assert!(uniform.len() < 100, "{}", uniform.len());
        // Bytes made from a Vec keep its allocation: the Vec must have been shrunk first.
        let v: Vec<u8> = uniform.into();
        assert!(
            v.capacity() < 200,
            "capacity {} for a small chunk",
            v.capacity()
        );
    }

    #[test]
    fn all_fill_chunks_are_not_encoded_and_others_decode_back() {
        let layout = small_layout();
        let enc = ChunkEncoder::new(&layout).unwrap();
        assert_eq!(enc.chunk_len(), 40 * 40);
        assert!(enc.encode(&vec![255u8; 1600]).unwrap().is_none());
        let pixels: Vec<u8> = (0..1600u32).map(|i| (i % 7) as u8).collect();
        let bytes = enc.encode(&pixels).unwrap().unwrap();
        assert!(bytes.len() < pixels.len());
        let decoded = zstd_decode(&bytes);
        assert_eq!(decoded, pixels);
    }

    fn zstd_decode(b: &[u8]) -> Vec<u8> {
        use zarrs::array::BytesToBytesCodecTraits;
        let codec = zarrs::array::codec::ZstdCodec::new(3, false);
        let repr = zarrs::array::BytesRepresentation::UnboundedSize;
        codec
            .decode(
                std::borrow::Cow::Borrowed(b),
                &repr,
                &CodecOptions::default(),
            )
            .unwrap()
            .into_owned()
    }
}

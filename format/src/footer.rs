//! The footer: an index of every chunk (with its statistics) and metadata
//! block, so a reader of a finished trace seeks instead of scanning.

use capnp::message::Builder;

use crate::chunk::{ChunkStats, read_message};
use crate::generated::trace_capnp;

/// Where a chunk is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset of the chunk block in the file.
    pub offset: u64,
    /// Length of the whole block, header included.
    pub length: u64,
    pub stats: ChunkStats,
}

/// The decoded footer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Footer {
    pub chunks: Vec<ChunkEntry>,
    pub metadata_blocks: Vec<u64>,
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut message = Builder::new_default();
        let mut root = message.init_root::<trace_capnp::footer::Builder<'_>>();
        root.set_event_count(
            self.chunks
                .iter()
                .map(|c| u64::from(c.stats.event_count))
                .sum(),
        );
        root.set_var_count(
            self.chunks
                .iter()
                .map(|c| u64::from(c.stats.var_count))
                .sum(),
        );
        let written = root
            .set_metadata_blocks(&self.metadata_blocks[..])
            .and_then(|()| {
                let mut list = root.init_chunks(self.chunks.len() as u32);
                for (i, chunk) in self.chunks.iter().enumerate() {
                    let mut c = list.reborrow().get(i as u32);
                    c.set_offset(chunk.offset);
                    c.set_length(chunk.length);
                    chunk.stats.write(c.init_stats())?;
                }
                Ok(())
            });
        debug_assert!(written.is_ok(), "building an in-memory message cannot fail");
        capnp::serialize::write_message_to_words(&message)
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Footer, String> {
        let message = read_message(body)?;
        let root = message
            .get_root::<trace_capnp::footer::Reader<'_>>()
            .map_err(|e| e.to_string())?;
        (|| -> capnp::Result<Footer> {
            let chunks = root
                .get_chunks()?
                .iter()
                .map(|c| {
                    Ok(ChunkEntry {
                        offset: c.get_offset(),
                        length: c.get_length(),
                        stats: ChunkStats::read(c.get_stats()?)?,
                    })
                })
                .collect::<capnp::Result<Vec<_>>>()?;
            Ok(Footer {
                chunks,
                metadata_blocks: root.get_metadata_blocks()?.iter().collect(),
            })
        })()
        .map_err(|e| e.to_string())
    }
}

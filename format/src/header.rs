//! The `header` block: who wrote the trace, when, and what was recorded.

use capnp::message::Builder;

use crate::chunk::read_message;
use crate::generated::trace_capnp;
use crate::metadata::{read_key_values, write_key_values};

/// Contents of the header block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderInfo {
    /// Name and version of the program that wrote the trace.
    pub writer: String,
    /// Wall-clock time of timestamp 0, in ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Facts known when recording starts (python version, argv, pid, ...).
    pub meta: Vec<(String, String)>,
}

impl HeaderInfo {
    pub(crate) fn encode(&self, minor: u16) -> Vec<u8> {
        let mut message = Builder::new_default();
        let mut root = message.init_root::<trace_capnp::file_header::Builder<'_>>();
        root.set_format_major(crate::FORMAT_MAJOR);
        root.set_format_minor(minor);
        root.set_writer(self.writer.as_str());
        root.set_start_unix_ns(self.start_unix_ns);
        write_key_values(root.init_meta(self.meta.len() as u32), &self.meta);
        capnp::serialize::write_message_to_words(&message)
    }

    pub(crate) fn decode(body: &[u8]) -> Result<HeaderInfo, String> {
        let message = read_message(body)?;
        let root = message
            .get_root::<trace_capnp::file_header::Reader<'_>>()
            .map_err(|e| e.to_string())?;
        (|| -> capnp::Result<HeaderInfo> {
            Ok(HeaderInfo {
                writer: root.get_writer()?.to_string()?,
                start_unix_ns: root.get_start_unix_ns(),
                meta: read_key_values(root.get_meta()?)?,
            })
        })()
        .map_err(|e| e.to_string())
    }
}

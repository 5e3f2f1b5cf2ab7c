# chronolog trace format, version 1.
#
# These structs are the bodies of the blocks described in format/SPEC.md. The
# framing around them (file prelude, block headers, trailer) is fixed-width
# little-endian and is not Cap'n Proto: a reader must be able to find and
# check a block before trusting any of its bytes.
#
# Compatibility rules: fields and enumerants are only ever added, with the next
# ordinal, in a new minor version; readers ignore what they do not know.
# Removing or changing the meaning of anything is a new major version.

@0xc25c617acac4d965;

struct KeyValue {
  # next ordinal: @2
  key @0 :Text;
  value @1 :Text;
}

struct FileHeader {
  # Body of the `header` block, the first block of every trace.
  # next ordinal: @5
  formatMajor @0 :UInt16;
  formatMinor @1 :UInt16;
  writer @2 :Text;          # name and version of the program that wrote the file
  startUnixNs @3 :UInt64;   # wall-clock time of timestamp 0, ns since the Unix epoch
  meta @4 :List(KeyValue);  # recording metadata known at start (python, argv, pid ...)
}

enum Compression {
  none @0;                  # data holds the encoded bytes as they are
  lz4 @1;                   # data is one LZ4 block; rawLen is its decompressed size
}

enum Encoding {
  # How a column's values become bytes (before compression). All integers are
  # unsigned LEB128 varints; "zigzag" maps signed deltas to unsigned.
  bytes @0;                 # raw bytes, one per value (count = byte length)
  varint @1;                # one varint per value
  deltaVarint @2;           # one varint per value: zigzag(v[i] - v[i-1]), v[-1] = 0
  rle @3;                   # runs: varint value, varint run length (>= 1)
  deltaRle @4;              # runs as in rle, over the zigzag deltas of deltaVarint
}

enum ColumnId {
  # Columns of the event table (one value per event, in seq order).
  seq @0;                   # global sequence number
  tsNs @1;                  # monotonic ns since the trace started
  thread @2;                # thread id (ThreadInfo.id)
  kind @3;                  # event kind, see SPEC.md
  frame @4;                 # activation id, unique in the trace
  depth @5;                 # stack depth of the frame (0 = outermost recorded)
  code @6;                  # code object id (CodeObject.id)
  line @7;                  # line number (0 = unknown)
  arg @8;                   # value ref: return/yield value, exception message; 0 = none
  argType @9;               # string id + 1 of the arg's type name; 0 = none
  excId @10;                # exception identity; 0 = not an exception event
  # Columns of the variable-change table (one value per change).
  varEvent @11;             # index, within this chunk, of the event the change belongs to
  varName @12;              # string id of the variable name
  varChange @13;            # 0 start, 1 new, 2 modified, 3 deleted
  varValue @14;             # value ref (0 = none, for deleted)
  varType @15;              # string id + 1 of the value's type name; 0 = none
  # The chunk's value dictionary: value ref k is entry k - 1.
  valueLen @16;             # byte length of each entry
  valueBytes @17;           # UTF-8 text of all entries, concatenated
  # Since 1.1 (older traces lack it: read as all 0).
  excContext @18;           # exc_id of the exception's __context__ (or __cause__) at a raise; 0 = none
  # Since 1.1: the checkpoint, the recorder's state before the chunk's first
  # event (one row per frame, then one per local of those frames).
  ckThread @19;             # thread id of the frame; 0xFFFFFFFF = a suspended generator
  ckFrame @20;              # activation id
  ckDepth @21;              # its depth on its thread's stack
  ckCode @22;               # code object id
  ckLine @23;               # its last line
  ckVarFrame @24;           # index of the checkpoint frame a local belongs to; ascending
  ckVarName @25;            # string id of the local's name
  ckVarValue @26;           # value ref of its last recorded repr
}

struct Column {
  # next ordinal: @6
  id @0 :ColumnId;
  encoding @1 :Encoding;
  compression @2 :Compression;
  count @3 :UInt32;         # number of values (bytes for `bytes`)
  rawLen @4 :UInt32;        # length of the encoded bytes before compression
  data @5 :Data;
}

struct ChunkStats {
  # Everything a reader needs to decide whether to decode a chunk.
  # next ordinal: @13
  firstSeq @0 :UInt64;
  lastSeq @1 :UInt64;
  minTsNs @2 :UInt64;
  maxTsNs @3 :UInt64;
  eventCount @4 :UInt32;
  varCount @5 :UInt32;
  valueCount @6 :UInt32;
  threads @7 :List(UInt32); # distinct thread ids, ascending
  codes @8 :List(UInt32);   # distinct code ids, ascending
  rawBytes @9 :UInt64;      # sum of the columns' encoded (uncompressed) sizes
  # Since 1.1:
  hasCheckpoint @10 :Bool;  # the chunk starts with a checkpoint (columns ck*)
  checkpointFrames @11 :UInt32;
  checkpointVars @12 :UInt32;
}

struct Chunk {
  # Body of a `chunk` block: a self-contained slice of the event stream.
  # next ordinal: @2
  stats @0 :ChunkStats;
  columns @1 :List(Column);
}

struct CodeObject {
  # next ordinal: @5
  id @0 :UInt32;
  file @1 :UInt32;          # string id of co_filename
  qualname @2 :UInt32;      # string id of co_qualname
  name @3 :UInt32;          # string id of co_name
  firstLine @4 :UInt32;
}

struct ThreadInfo {
  # next ordinal: @4
  id @0 :UInt32;
  name @1 :Text;
  nativeId @2 :UInt64;      # the OS thread id (threading.get_native_id)
  ident @3 :UInt64;         # threading.get_ident
}

struct SourceFile {
  # next ordinal: @4
  file @0 :UInt32;          # string id of the path, as in CodeObject.file
  compression @1 :Compression;
  rawLen @2 :UInt32;        # byte length of the UTF-8 text
  text @3 :Data;
}

struct Metadata {
  # Body of a `metadata` block. Written before the first chunk that uses it.
  # Strings have dense ids: this block defines firstStringId, firstStringId + 1, ...
  # next ordinal: @6
  firstStringId @0 :UInt32;
  strings @1 :List(Text);
  codes @2 :List(CodeObject);
  threads @3 :List(ThreadInfo);
  sources @4 :List(SourceFile);
  meta @5 :List(KeyValue);  # metadata learned while recording (exit status, end time ...)
}

struct ChunkIndex {
  # next ordinal: @3
  offset @0 :UInt64;        # file offset of the chunk block's header
  length @1 :UInt64;        # length of the whole block, header included
  stats @2 :ChunkStats;
}

struct Footer {
  # Body of the `footer` block, found through the trailer at the end of the file.
  # next ordinal: @4
  chunks @0 :List(ChunkIndex);
  metadataBlocks @1 :List(UInt64);  # file offsets of every metadata block
  eventCount @2 :UInt64;
  varCount @3 :UInt64;
}

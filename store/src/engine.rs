//! Opening RocksDB with the store's column families and tuning.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, DataBlockIndexType, Options,
    WriteBufferManager, DB,
};

use crate::error::Error;
use crate::keys::{ALL_CFS, CF_BODIES, CF_DOCS};

/// The least memory all memtables together may use, however small the cache.
const MIN_MEMTABLE_BYTES: usize = 4 << 20;

/// RocksDB options the store runs with. Public only so that benchmarks can open
/// a raw RocksDB with the very same tuning and compare like with like.
#[doc(hidden)]
pub fn engine_options(cache_bytes: usize) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts.set_max_background_jobs(2);
    opts.set_bytes_per_sync(1 << 20);
    let cache = Cache::new_lru_cache(cache_bytes);
    // Memtables are charged to the block cache and capped at a quarter of it, across
    // every column family: otherwise each of them may hold two 64 MiB memtables and
    // a node's memory grows far past its configured bound under a steady write load.
    let memtables = WriteBufferManager::new_write_buffer_manager_with_cache(
        (cache_bytes / 4).max(MIN_MEMTABLE_BYTES),
        false,
        cache.clone(),
    );
    opts.set_write_buffer_manager(&memtables);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    // Point reads dominate: a hash index in each data block finds the key without a
    // binary search of the block's restart points.
    table.set_data_block_index_type(DataBlockIndexType::BinaryAndHash);
    table.set_data_block_hash_ratio(0.75);
    opts.set_block_based_table_factory(&table);
    opts
}

pub(crate) fn open(path: &Path, cache_bytes: usize) -> Result<DB, Error> {
    let opts = engine_options(cache_bytes);
    let cfs = ALL_CFS.iter().map(|name| {
        let mut cf = opts.clone();
        if *name == CF_DOCS || *name == CF_BODIES {
            // Point lookups dominate: keep a memtable bloom too, over whole keys (a
            // prefix bloom without a prefix extractor filters nothing).
            cf.set_memtable_prefix_bloom_ratio(0.1);
            cf.set_memtable_whole_key_filtering(true);
        }
        ColumnFamilyDescriptor::new(*name, cf)
    });
    DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| {
        let msg = e.into_string();
        if msg.contains("LOCK") || msg.contains("lock hold") {
            Error::Locked {
                path: path.to_owned(),
            }
        } else {
            Error::Engine(msg)
        }
    })
}

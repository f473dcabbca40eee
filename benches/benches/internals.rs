//! Criterion micro-benchmarks of mpr's hot internals, through the
//! doc-hidden `mpr::engine` API: the frame header codec, matching with
//! 1 000 posted receives or 1 000 unexpected messages, a reduction kernel,
//! and the Pod tier of the API against the serde tier.
//!
//! `cargo bench -p mpr-bench --bench internals [-- FILTER]`; for a quick
//! pass add `-- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use mpr::engine::frame::{HEADER_LEN, Header, Kind};
use mpr::engine::{Engine, EngineConfig, RecvBuf, RecvData, RequestId, Source, TagMatch};
use mpr::{ContextId, Rank, Tag};

/// Entries in each matching queue.
const QUEUE: usize = 1000;
/// Payload of each eager message in the matching benchmarks.
const PAYLOAD: usize = 8;
/// The receiving rank and its peer.
const ME: Rank = Rank(0);
const PEER: Rank = Rank(1);
const CONTEXT: ContextId = ContextId(0);

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    frame_codec(&mut criterion);
    matching(&mut criterion);
    reduction(&mut criterion);
    pod_vs_serde(&mut criterion);
    criterion.final_summary();
}

/// Encoding and decoding one 32-byte frame header.
fn frame_codec(c: &mut Criterion) {
    let header = Header {
        kind: Kind::Eager,
        flags: 0,
        context: CONTEXT,
        source: PEER,
        tag: Tag(42),
        id: 0x0123_4567,
        arg: 4096,
    };
    let bytes = header.encode();
    let mut group = c.benchmark_group("frame");
    group.bench_function("encode", |b| b.iter(|| black_box(&header).encode()));
    group.bench_function("decode", |b| {
        b.iter(|| Header::decode(black_box(&bytes)).expect("valid header"))
    });
    group.finish();
}

/// The wire bytes of `QUEUE` EAGER frames from `PEER`, tags `0..QUEUE` in order.
fn eager_stream() -> Vec<u8> {
    let mut stream = Vec::with_capacity(QUEUE * (HEADER_LEN + PAYLOAD));
    for i in 0..QUEUE {
        let mut header = Header::new(Kind::Eager, PEER);
        header.context = CONTEXT;
        header.tag = Tag(i as i32);
        header.id = i as u64;
        header.arg = PAYLOAD as u64;
        stream.extend_from_slice(&header.encode());
        stream.extend_from_slice(&(i as f64).to_le_bytes());
    }
    stream
}

/// Feeds `stream` to `engine` as the transport would, in the chunks
/// `recv_target` offers.
fn feed(engine: &mut Engine, mut stream: &[u8]) {
    while !stream.is_empty() {
        let target = engine.recv_target(PEER);
        let n = target.len().min(stream.len());
        target[..n].copy_from_slice(&stream[..n]);
        engine.received(PEER, n).expect("valid frames");
        stream = &stream[n..];
    }
}

/// A fresh engine and one receive buffer per message.
fn setup() -> (Engine, Vec<Box<dyn RecvBuf>>) {
    let engine = Engine::new(ME, 2, EngineConfig::default());
    let buffers = (0..QUEUE)
        .map(|_| Box::new(vec![0u8; PAYLOAD]) as Box<dyn RecvBuf>)
        .collect();
    (engine, buffers)
}

/// Takes every completion, checking each receive finished.
fn complete(engine: &mut Engine, ids: &[RequestId]) {
    for &id in ids {
        let done = engine.take_completion(id).expect("receive complete");
        debug_assert!(done.result.is_ok());
    }
}

/// 1 000 posted receives, then 1 000 matching EAGER frames (each frame
/// finds its receive among the posted ones); and the reverse, 1 000
/// unexpected messages then 1 000 receives, posted last tag first so each
/// takes from the middle of the queue, by exact tag or by `ANY_SOURCE`.
fn matching(c: &mut Criterion) {
    let stream = eager_stream();
    let mut group = c.benchmark_group("matching");
    group.throughput(Throughput::Elements(QUEUE as u64));
    group.bench_function("posted_1000_then_eager", |b| {
        b.iter_batched(
            setup,
            |(mut engine, buffers)| {
                let ids: Vec<RequestId> = buffers
                    .into_iter()
                    .enumerate()
                    .map(|(i, buf)| {
                        engine.post_recv(
                            Source::Rank(PEER),
                            CONTEXT,
                            TagMatch::Tag(Tag(i as i32)),
                            RecvData::Owned(buf),
                        )
                    })
                    .collect();
                feed(&mut engine, &stream);
                complete(&mut engine, &ids);
                engine
            },
            BatchSize::SmallInput,
        )
    });
    for (name, source) in [
        ("unexpected_1000_then_recv", Source::Rank(PEER)),
        ("unexpected_1000_then_recv_any_source", Source::Any),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                setup,
                |(mut engine, buffers)| {
                    feed(&mut engine, &stream);
                    let ids: Vec<RequestId> = buffers
                        .into_iter()
                        .enumerate()
                        .map(|(i, buf)| {
                            let tag = Tag((QUEUE - 1 - i) as i32);
                            engine.post_recv(
                                source,
                                CONTEXT,
                                TagMatch::Tag(tag),
                                RecvData::Owned(buf),
                            )
                        })
                        .collect();
                    complete(&mut engine, &ids);
                    engine
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// The reduction kernels the collectives run on received blocks
/// (`Op::reduce`): f64 sum and max, and i64 bitwise xor, over 1 KiB,
/// 64 KiB and 1 MiB.
fn reduction(c: &mut Criterion) {
    use mpr::op::{BitXor, Max, Op, Sum};
    let mut group = c.benchmark_group("reduce_kernels");
    for len in [128usize, 8 << 10, 128 << 10] {
        let x: Vec<f64> = (0..len).map(|i| i as f64).collect();
        let mut acc = vec![1.0f64; len];
        let xi: Vec<i64> = (0..len as i64).collect();
        let mut acci = vec![7i64; len];
        group.throughput(Throughput::Bytes((len * 8) as u64));
        group.bench_with_input(BenchmarkId::new("sum_f64", len * 8), &x, |b, x| {
            b.iter(|| Sum.reduce(black_box(x), black_box(&mut acc), false))
        });
        group.bench_with_input(BenchmarkId::new("max_f64", len * 8), &x, |b, x| {
            b.iter(|| Max.reduce(black_box(x), black_box(&mut acc), false))
        });
        group.bench_with_input(BenchmarkId::new("bxor_i64", len * 8), &xi, |b, x| {
            b.iter(|| BitXor.reduce(black_box(x), black_box(&mut acci), false))
        });
    }
    group.finish();
}

/// Turning a `Vec<f64>` into message bytes and back: the Pod tier views
/// the memory as bytes (`send`/`recv` of `&[f64]`), the serde tier encodes
/// with postcard (`send_obj`/`recv_obj`).
fn pod_vs_serde(c: &mut Criterion) {
    let mut group = c.benchmark_group("pod_vs_serde");
    for len in [128usize, 8 << 10] {
        let values: Vec<f64> = (0..len).map(|i| i as f64 * 0.5).collect();
        let pod_bytes: Vec<u8> = bytemuck::cast_slice::<f64, u8>(&values).to_vec();
        let mut landing = vec![0f64; len];
        let encoded = postcard::to_allocvec(&values).expect("encode");
        group.throughput(Throughput::Bytes((len * 8) as u64));
        group.bench_with_input(BenchmarkId::new("pod_encode", len * 8), &values, |b, v| {
            b.iter(|| bytemuck::cast_slice::<f64, u8>(black_box(v)).len())
        });
        group.bench_with_input(
            BenchmarkId::new("pod_decode", len * 8),
            &pod_bytes,
            |b, bytes| {
                // The receive lands in the user's buffer: one copy of the bytes.
                b.iter(|| {
                    bytemuck::cast_slice_mut::<f64, u8>(black_box(&mut landing))
                        .copy_from_slice(black_box(bytes))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("serde_encode", len * 8),
            &values,
            |b, v| b.iter(|| postcard::to_allocvec(black_box(v)).expect("encode")),
        );
        group.bench_with_input(
            BenchmarkId::new("serde_decode", len * 8),
            &encoded,
            |b, bytes| {
                b.iter(|| postcard::from_bytes::<Vec<f64>>(black_box(bytes)).expect("decode"))
            },
        );
    }
    group.finish();
}

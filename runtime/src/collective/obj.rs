//! The serde tier of the collectives: any `Serialize + DeserializeOwned`
//! value, encoded with postcard like [`Comm::send_obj`].
//!
//! Each call is two collectives: the encoded lengths, then the bytes. Both
//! use algorithms whose message pattern does not depend on the lengths
//! (binomial, linear, Bruck), so that a rank that failed the first phase can
//! still play the second one poisoned and nobody waits for it forever.

use mpr_collectives::{Algorithm, Schedule};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CollChannel;
use crate::Rank;
use crate::comm::{Comm, CommInner};
use crate::error::{Argument, Error};

/// One phase: the schedule, this rank's input, and its output buffer with
/// its initial content (in-place collectives read it).
type Phase<T> = (Schedule, Vec<T>, Vec<T>);

impl CommInner {
    /// Runs the length phase, then the data phase built from the lengths
    /// this rank ended with. A local error, or a failed first phase, plays
    /// the rest poisoned and returns the error.
    fn two_phase(
        &self,
        local: Result<(), Error>,
        lengths: Phase<u64>,
        data: impl FnOnce(&[u64]) -> Phase<u8>,
    ) -> Result<(Vec<u64>, Vec<u8>), Error> {
        let (schedule, input, mut got) = lengths;
        let first = match local {
            Ok(()) => self.run(&schedule, &input, &mut got, None),
            Err(error) => Err(self.reject::<u64>(&schedule, error)),
        };
        if let Err(error) = first {
            got.iter_mut().for_each(|len| *len = 0);
            let (schedule, _, _) = data(&got);
            mpr_collectives::execute_poisoned(&CollChannel { comm: self }, &schedule, 1);
            return Err(error);
        }
        let (schedule, input, mut bytes) = data(&got);
        self.run(&schedule, &input, &mut bytes, None)?;
        Ok((got, bytes))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, Error> {
        postcard::from_bytes(bytes).map_err(|error| self.error(Error::Deserialize(error)))
    }

    /// Splits `bytes` by `lengths` and decodes each part.
    fn decode_all<T: DeserializeOwned>(
        &self,
        lengths: &[u64],
        bytes: &[u8],
    ) -> Result<Vec<T>, Error> {
        let mut offset = 0;
        lengths
            .iter()
            .map(|&len| {
                let part = &bytes[offset..offset + len as usize];
                offset += len as usize;
                self.decode(part)
            })
            .collect()
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    postcard::to_allocvec(value).map_err(Error::Serialize)
}

fn lens(counts: &[u64]) -> Vec<usize> {
    counts.iter().map(|&len| len as usize).collect()
}

impl Comm {
    /// Broadcasts a value from `root` (`MPI_Bcast` of an object): the root
    /// passes `Some(value)` and gets it back; the others pass `None` and get
    /// a copy. A root passing `None` gets [`Error::RootValueMissing`] (and
    /// the others an error too, as for any bad argument).
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let config = (world.rank() == 0).then(|| vec!["a".to_string(), "b".to_string()]);
    ///     let config = world.bcast_obj(config, 0)?;
    ///     assert_eq!(config, ["a", "b"]);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn bcast_obj<T: Serialize + DeserializeOwned>(
        &self,
        value: Option<T>,
        root: impl Into<Rank>,
    ) -> Result<T, Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let is_root = rank == root;
        let (encoded, local) = match (&value, is_root) {
            (Some(value), true) => match encode(value) {
                Ok(bytes) => (bytes, Ok(())),
                Err(error) => (Vec::new(), Err(error)),
            },
            (None, true) => (Vec::new(), Err(Error::RootValueMissing)),
            (_, false) => (Vec::new(), Ok(())),
        };
        let lengths = (
            mpr_collectives::bcast(Algorithm::Binomial, rank, size, root, 1),
            Vec::new(),
            vec![encoded.len() as u64],
        );
        let (_, bytes) = inner.two_phase(local, lengths, |got| {
            let len = got[0] as usize;
            let schedule = mpr_collectives::bcast(Algorithm::Binomial, rank, size, root, len);
            let initial = if is_root { encoded } else { vec![0; len] };
            (schedule, Vec::new(), initial)
        })?;
        match value {
            Some(value) if is_root => Ok(value),
            _ => inner.decode(&bytes),
        }
    }

    /// Collects every rank's value at `root`, in rank order (`MPI_Gather` of
    /// objects): `Some(values)` there, `None` elsewhere.
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let names = world.gather_obj(&format!("rank{}", world.rank()), 0)?;
    ///     if world.rank() == 0 {
    ///         assert_eq!(names.unwrap(), ["rank0", "rank1", "rank2"]);
    ///     }
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn gather_obj<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
        root: impl Into<Rank>,
    ) -> Result<Option<Vec<T>>, Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let is_root = rank == root;
        let (encoded, local) = match encode(value) {
            Ok(bytes) => (bytes, Ok(())),
            Err(error) => (Vec::new(), Err(error)),
        };
        let lengths = (
            mpr_collectives::gather(Algorithm::Binomial, rank, size, root, 1),
            vec![encoded.len() as u64],
            vec![0; if is_root { size as usize } else { 0 }],
        );
        let own = encoded.len();
        let (got, bytes) = inner.two_phase(local, lengths, |got| {
            let counts = lens(got);
            let total = counts.iter().sum();
            let schedule = mpr_collectives::gatherv(rank, size, root, &counts, own);
            (schedule, encoded, vec![0; if is_root { total } else { 0 }])
        })?;
        if is_root {
            inner.decode_all(&got, &bytes).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Sends `values[r]` from `root` to rank `r` (`MPI_Scatter` of objects):
    /// the root passes one value per rank, the others an empty slice.
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let work: Vec<Vec<u32>> = if world.rank() == 0 { vec![vec![], vec![1], vec![2, 2]] } else { Vec::new() };
    ///     let mine = world.scatter_obj(&work, 0)?;
    ///     assert_eq!(mine.len(), world.rank() as usize);
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn scatter_obj<T: Serialize + DeserializeOwned>(
        &self,
        values: &[T],
        root: impl Into<Rank>,
    ) -> Result<T, Error> {
        let inner = &*self.inner;
        let root = inner.root(root.into())?;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let is_root = rank == root;
        let mut local = Ok(());
        let mut encoded = Vec::new();
        let mut counts = Vec::new();
        if is_root {
            local = if values.len() == size as usize {
                Ok(())
            } else {
                Err(Error::BufferLength {
                    argument: Argument::Values,
                    expected: size as usize,
                    actual: values.len(),
                })
            };
            for value in values.iter().take(size as usize) {
                match encode(value) {
                    Ok(bytes) => {
                        counts.push(bytes.len() as u64);
                        encoded.extend_from_slice(&bytes);
                    }
                    Err(error) => {
                        local = local.and(Err(error));
                        counts.push(0);
                    }
                }
            }
            counts.resize(size as usize, 0);
        }
        let lengths = (
            mpr_collectives::scatter(Algorithm::Binomial, rank, size, root, 1),
            counts.clone(),
            vec![0],
        );
        let (_, bytes) = inner.two_phase(local, lengths, |got| {
            let own = got[0] as usize;
            let schedule = mpr_collectives::scatterv(rank, size, root, &lens(&counts), own);
            (schedule, encoded, vec![0; own])
        })?;
        inner.decode(&bytes)
    }

    /// Collects every rank's value at every rank, in rank order
    /// (`MPI_Allgather` of objects).
    ///
    /// ```
    /// mpr::local::run(3, |world| {
    ///     let all = world.allgather_obj(&(world.rank(), "x".repeat(world.rank() as usize)))?;
    ///     assert_eq!(all[2], (2, "xx".to_string()));
    ///     Ok::<(), mpr::Error>(())
    /// });
    /// ```
    pub fn allgather_obj<T: Serialize + DeserializeOwned>(
        &self,
        value: &T,
    ) -> Result<Vec<T>, Error> {
        let inner = &*self.inner;
        let (rank, size) = (inner.rank.0, inner.group.size());
        let (encoded, local) = match encode(value) {
            Ok(bytes) => (bytes, Ok(())),
            Err(error) => (Vec::new(), Err(error)),
        };
        let lengths = (
            mpr_collectives::allgather(Algorithm::Bruck, rank, size, &vec![1; size as usize]),
            vec![encoded.len() as u64],
            vec![0; size as usize],
        );
        let (got, bytes) = inner.two_phase(local, lengths, |got| {
            let counts = lens(got);
            let total = counts.iter().sum();
            let schedule = mpr_collectives::allgather(Algorithm::Bruck, rank, size, &counts);
            (schedule, encoded, vec![0; total])
        })?;
        inner.decode_all(&got, &bytes)
    }
}

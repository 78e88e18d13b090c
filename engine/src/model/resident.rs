//! Device-memory accounting of loaded components (docs/acestep-model.md §12 memory; docs/candle.md §3): how many bytes
//! of tensors a component holds, and a ledger that books every loaded component and DiT block for as long as it is
//! alive.

use std::ops::Deref;
use std::sync::Arc;

use candle_core::Tensor;
use candle_nn::Embedding;

use parking_lot::Mutex;

/// Bytes of the tensors a loaded value holds: its weights and any constant tables it precomputed at load.
///
/// A tensor counts its logical size (elements × dtype size); the components hold no views into larger buffers,
/// so this is the memory their tensors occupy.
pub trait ResidentBytes {
    /// Total bytes of the held tensors.
    fn resident_bytes(&self) -> u64;
}

impl ResidentBytes for Tensor {
    fn resident_bytes(&self) -> u64 {
        (self.elem_count() * self.dtype().size_in_bytes()) as u64
    }
}

impl ResidentBytes for Embedding {
    fn resident_bytes(&self) -> u64 {
        self.embeddings().resident_bytes()
    }
}

impl<T: ResidentBytes> ResidentBytes for Option<T> {
    fn resident_bytes(&self) -> u64 {
        self.as_ref().map_or(0, T::resident_bytes)
    }
}

impl<T: ResidentBytes> ResidentBytes for Vec<T> {
    fn resident_bytes(&self) -> u64 {
        self.iter().map(T::resident_bytes).sum()
    }
}

/// Implements [`ResidentBytes`] for a struct as the sum over the listed fields (those holding tensors).
macro_rules! resident_fields {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::model::resident::ResidentBytes for $ty {
            fn resident_bytes(&self) -> u64 {
                0 $(+ $crate::model::resident::ResidentBytes::resident_bytes(&self.$field))+
            }
        }
    };
}
pub(crate) use resident_fields;

/// Bytes booked now and the highest totals seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LedgerTotals {
    /// Bytes of the values alive now.
    pub resident: u64,
    /// The most bytes ever alive at once.
    pub peak_resident: u64,
    /// The activation allowance of the current stage (see [`Ledger::set_headroom`]).
    pub headroom: u64,
    /// The highest `resident + headroom` ever reached.
    pub peak: u64,
}

impl LedgerTotals {
    fn update_peaks(&mut self) {
        self.peak_resident = self.peak_resident.max(self.resident);
        self.peak = self.peak.max(self.resident + self.headroom);
    }
}

/// A shared running count of resident bytes. Clones share the count; [`Tracked`] values add themselves while
/// alive, so the count follows the real lifetimes however many handles a caller keeps.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    totals: Arc<Mutex<LedgerTotals>>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current totals.
    pub fn totals(&self) -> LedgerTotals {
        *self.totals.lock()
    }

    /// Sets the activation allowance of the stage that starts now (it counts towards the peak).
    pub fn set_headroom(&self, bytes: u64) {
        let mut totals = self.totals.lock();
        totals.headroom = bytes;
        totals.update_peaks();
    }

    fn book(&self, bytes: u64) {
        let mut totals = self.totals.lock();
        totals.resident += bytes;
        totals.update_peaks();
    }

    fn release(&self, bytes: u64) {
        self.totals.lock().resident -= bytes;
    }
}

/// A loaded value booked in a [`Ledger`] from construction until it is dropped.
#[derive(Debug)]
pub struct Tracked<T> {
    value: T,
    bytes: u64,
    ledger: Ledger,
}

impl<T: ResidentBytes> Tracked<T> {
    /// Books `value`'s [`ResidentBytes`] in `ledger`.
    pub fn new(value: T, ledger: &Ledger) -> Self {
        let bytes = value.resident_bytes();
        ledger.book(bytes);
        Self { value, bytes, ledger: ledger.clone() }
    }
}

impl<T> Tracked<T> {
    /// The bytes booked for this value.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> Drop for Tracked<T> {
    fn drop(&mut self) {
        self.ledger.release(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::model::linear::Linear;

    #[test]
    fn tensor_bytes_are_elements_times_dtype_size() {
        let t = Tensor::zeros((3, 5), DType::BF16, &Device::Cpu).unwrap();
        assert_eq!(t.resident_bytes(), 30);
        let linear = Linear::new(Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap(), Some(t)).unwrap();
        assert_eq!(linear.resident_bytes(), 32 + 30);
    }

    #[test]
    fn tracked_values_are_booked_while_alive_and_peaks_include_the_headroom() {
        let ledger = Ledger::new();
        let a = Tracked::new(Tensor::zeros(10, DType::F32, &Device::Cpu).unwrap(), &ledger);
        let b = Arc::new(Tracked::new(Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(), &ledger));
        assert_eq!(ledger.totals().resident, 56);
        let b2 = b.clone();
        drop(b);
        assert_eq!(ledger.totals().resident, 56, "a second handle keeps the value resident");
        drop(b2);
        ledger.set_headroom(100);
        assert_eq!(ledger.totals(), LedgerTotals { resident: 40, peak_resident: 56, headroom: 100, peak: 140 });
        drop(a);
        assert_eq!(ledger.totals().resident, 0);
    }
}

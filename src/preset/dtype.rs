//! The element types a variable may have, and the values each holds.
//!
//! Invariant: a fill value or nodata accepted by [`DType::holds`] converts to the type
//! without loss (integers in range and whole; float32 anything finite, or NaN).

use std::fmt;

/// A variable's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    UInt8,
    Int16,
    UInt16,
    Float32,
}

impl DType {
    /// Every type a preset may name, as it names them.
    pub const ALL: [DType; 4] = [Self::UInt8, Self::Int16, Self::UInt16, Self::Float32];

    /// The Zarr (and NumPy) name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UInt8 => "uint8",
            Self::Int16 => "int16",
            Self::UInt16 => "uint16",
            Self::Float32 => "float32",
        }
    }

    /// The type a preset names, if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes an element takes.
    pub fn size(self) -> usize {
        match self {
            Self::UInt8 => 1,
            Self::Int16 | Self::UInt16 => 2,
            Self::Float32 => 4,
        }
    }

    /// The range of an integer type.
    fn range(self) -> Option<(f64, f64)> {
        match self {
            Self::UInt8 => Some((0.0, 255.0)),
            Self::Int16 => Some((-32768.0, 32767.0)),
            Self::UInt16 => Some((0.0, 65535.0)),
            Self::Float32 => None,
        }
    }

    /// Why `value` is not a value of this type, if it is not.
    pub fn holds(self, value: f64) -> Option<String> {
        match self.range() {
            Some((lo, hi)) if value.fract() != 0.0 || !(lo..=hi).contains(&value) => Some(format!(
                "{value} is not a {} value ({lo} to {hi}, whole)",
                self.name()
            )),
            None if value.is_infinite() || (value.is_finite() && value.abs() > f32::MAX as f64) => {
                Some(format!("{value} is beyond float32"))
            }
            _ => None,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_against_each_types_range() {
        assert_eq!(DType::UInt8.holds(255.0), None);
        assert!(DType::UInt8.holds(256.0).unwrap().contains("0 to 255"));
        assert!(DType::UInt8.holds(-1.0).is_some());
        assert!(DType::UInt8.holds(1.5).is_some());
        assert_eq!(DType::Int16.holds(-32768.0), None);
        assert!(DType::Int16.holds(40000.0).is_some());
        assert_eq!(DType::UInt16.holds(65535.0), None);
        assert_eq!(DType::Float32.holds(f64::NAN), None);
        assert_eq!(DType::Float32.holds(-9999.5), None);
        assert!(DType::Float32.holds(1e300).is_some());
        assert_eq!(DType::from_name("int16"), Some(DType::Int16));
        assert_eq!(DType::from_name("int64"), None);
    }
}

//! Data classification and its propagation rule.

use std::fmt;

/// How sensitive an asset's data is, least to most sensitive (the derived `Ord` follows
/// this order, so "the most sensitive of" is `max`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// Free to publish.
    Public,
    /// De-identified under Safe Harbor or expert determination.
    Deidentified,
    /// A HIPAA limited data set.
    Limited,
    /// Direct identifiers: names, MRNs, dates of service tied to a person.
    Phi,
}

impl Classification {
    pub const ALL: [Classification; 4] = [
        Classification::Public,
        Classification::Deidentified,
        Classification::Limited,
        Classification::Phi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Deidentified => "deidentified",
            Classification::Limited => "limited",
            Classification::Phi => "phi",
        }
    }

    /// Whether the data is protected health information for segregation purposes
    /// (PHI-capable executors, redaction): `phi` and `limited`.
    pub fn is_protected(self) -> bool {
        self >= Classification::Limited
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an asset's effective classification comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassificationSource {
    /// Its own declaration (which is at least as sensitive as anything upstream).
    Declared,
    /// Inherited from this upstream asset (the nearest one carrying the class).
    Inherited(crate::AssetKey),
    /// Raised to `limited` because its partition keys are personal.
    SensitivePartitionKeys,
    /// Nothing declared anywhere upstream: the default.
    Default,
}

/// The effective class of one asset given its own declaration and its inputs' effective
/// classes: the most sensitive of them, unless the asset de-identifies, in which case its
/// declaration stands.
///
/// Returns the effective class and whether the declaration was *lower* than inherited
/// without `deidentifies` (a validation error the caller reports).
pub fn effective_class(
    declared: Option<Classification>,
    deidentifies: bool,
    inherited: Option<Classification>,
) -> (Classification, bool) {
    match (declared, inherited) {
        (Some(own), _) if deidentifies => (own, false),
        (Some(own), Some(up)) => (own.max(up), own < up),
        (Some(own), None) => (own, false),
        (None, Some(up)) => (up, false),
        // Undeclared with nothing upstream: assume the worst. A hospital warehouse
        // should have to say that something is public, not the other way round.
        (None, None) => (Classification::Phi, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Classification::*;

    #[test]
    fn order_is_sensitivity() {
        assert!(Public < Deidentified && Deidentified < Limited && Limited < Phi);
        assert!(Limited.is_protected() && Phi.is_protected() && !Deidentified.is_protected());
    }

    #[test]
    fn lowering_needs_deidentifies() {
        assert_eq!(effective_class(Some(Public), false, Some(Phi)), (Phi, true));
        assert_eq!(
            effective_class(Some(Deidentified), true, Some(Phi)),
            (Deidentified, false)
        );
        assert_eq!(
            effective_class(Some(Phi), false, Some(Public)),
            (Phi, false)
        );
        assert_eq!(
            effective_class(None, false, Some(Limited)),
            (Limited, false)
        );
        assert_eq!(effective_class(None, false, None), (Phi, false));
    }
}

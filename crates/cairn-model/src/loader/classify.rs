//! Effective classifications, computed down the lineage.

use super::{Context, Entry};
use crate::classification::{Classification, ClassificationSource, effective_class};
use crate::graph::AssetGraph;
use crate::spec::AssetSpec;

impl Context<'_> {
    /// Effective classifications in topological order, and the checks that need them.
    pub(super) fn classify(
        &mut self,
        mut graph: AssetGraph,
        entries: &[&Entry<AssetSpec>],
    ) -> Option<AssetGraph> {
        let order = graph.topological_order().to_vec();
        let mut effective: Vec<(Classification, ClassificationSource)> =
            vec![(Classification::Phi, ClassificationSource::Default); graph.len()];
        for id in order {
            let asset = graph.asset(id);
            let entry = entries[id.index()];
            let inherited = asset
                .deps
                .iter()
                .map(|d| (effective[d.upstream.index()].0, d.upstream))
                .max_by_key(|(class, _)| *class);
            let sensitive_keys = asset
                .partitions
                .as_ref()
                .is_some_and(|p| p.def.has_sensitive_keys());
            let declared = asset.classification.declared;
            let deidentifies = asset.classification.deidentification_reason.is_some();
            let (mut class, lowered) =
                effective_class(declared, deidentifies, inherited.map(|(c, _)| c));
            let mut source = match (declared, inherited) {
                (Some(d), _) if deidentifies || inherited.is_none_or(|(up, _)| d >= up) => {
                    ClassificationSource::Declared
                }
                (_, Some((_, from))) => {
                    ClassificationSource::Inherited(graph.asset(from).key.clone())
                }
                (None, None) => ClassificationSource::Default,
                (Some(_), None) => ClassificationSource::Declared,
            };
            if sensitive_keys && class < Classification::Limited {
                class = Classification::Limited;
                source = ClassificationSource::SensitivePartitionKeys;
            }
            if lowered {
                let (up_class, from) = inherited.expect("lowered implies inherited");
                let span = entry
                    .value
                    .classification
                    .as_ref()
                    .map_or(entry.value.key.span(), |c| c.span());
                self.report(
                    entry.file,
                    span,
                    &format!("asset[{}].classification", asset.key),
                    format!(
                        "declared {} but inherits {} from \"{}\": classification cannot be lowered without `deidentifies = true` and a reason",
                        declared.expect("lowered implies declared"),
                        up_class,
                        graph.asset(from).key
                    ),
                );
            }
            if let Some(target) = asset
                .storage
                .as_ref()
                .and_then(|s| graph.storage_targets().get(s))
                && class > target.max_class
            {
                let span = entry
                    .value
                    .storage
                    .as_ref()
                    .map_or(entry.value.key.span(), |s| s.span());
                self.report(
                    entry.file,
                    span,
                    &format!("asset[{}].storage", asset.key),
                    format!(
                        "effective classification {class} exceeds storage target \"{}\" (holds at most {})",
                        target.name, target.max_class
                    ),
                );
            }
            effective[id.index()] = (class, source);
        }
        graph.set_classifications(effective);
        self.diagnostics.is_empty().then_some(graph)
    }
}

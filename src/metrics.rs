//! The field's metrics: confusion matrix, per-class recall, UAR (mean of the per-class recalls)
//! and WAR (overall accuracy).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Unweighted average recall, in percent.
    pub uar: f64,
    /// Weighted average recall (accuracy), in percent.
    pub war: f64,
    /// Recall of each class in percent (`null` for a class absent from the labels).
    pub recall: Vec<Option<f64>>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
    pub clips: u64,
}

impl Metrics {
    /// From true and predicted labels over `classes` classes. UAR averages the classes present.
    pub(crate) fn from_predictions(truth: &[usize], predicted: &[usize], classes: usize) -> Metrics {
        let mut confusion = vec![vec![0u64; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            confusion[t][p] += 1;
        }
        Self::from_confusion(confusion)
    }

    pub(crate) fn from_confusion(confusion: Vec<Vec<u64>>) -> Metrics {
        let clips: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..confusion.len()).map(|i| confusion[i][i]).sum();
        let recall: Vec<Option<f64>> = confusion
            .iter()
            .enumerate()
            .map(|(i, row)| {
                let n: u64 = row.iter().sum();
                (n > 0).then(|| 100.0 * row[i] as f64 / n as f64)
            })
            .collect();
        let present: Vec<f64> = recall.iter().flatten().copied().collect();
        let uar = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        let war = if clips == 0 { 0.0 } else { 100.0 * correct as f64 / clips as f64 };
        Metrics { uar, war, recall, confusion, clips }
    }

    /// The confusion matrix as CSV with a header of predicted labels and a row label column.
    pub(crate) fn confusion_csv(&self, labels: &[String]) -> String {
        let mut out = format!("true\\predicted,{}\n", labels.join(","));
        for (name, row) in labels.iter().zip(&self.confusion) {
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            out.push_str(&format!("{name},{}\n", cells.join(",")));
        }
        out
    }
}

/// Index of the largest score (first on ties).
pub(crate) fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hand_computed_confusion_matrix() {
        // 3 classes. Class 0: 4 clips, 3 right; class 1: 2 clips, 1 right; class 2: 4 clips, 4 right.
        let truth = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2];
        let pred = [0, 0, 0, 2, 1, 0, 2, 2, 2, 2];
        let m = Metrics::from_predictions(&truth, &pred, 3);
        assert_eq!(m.confusion, vec![vec![3, 0, 1], vec![1, 1, 0], vec![0, 0, 4]]);
        assert_eq!(m.recall, vec![Some(75.0), Some(50.0), Some(100.0)]);
        assert!((m.uar - 75.0).abs() < 1e-12, "(75 + 50 + 100) / 3");
        assert!((m.war - 80.0).abs() < 1e-12, "8 of 10");
        let labels: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        assert_eq!(m.confusion_csv(&labels), "true\\predicted,A,B,C\nA,3,0,1\nB,1,1,0\nC,0,0,4\n");
        let absent = Metrics::from_predictions(&[0, 0], &[0, 1], 3);
        assert_eq!(absent.recall, vec![Some(50.0), None, None]);
        assert!((absent.uar - 50.0).abs() < 1e-12, "classes without clips are left out of UAR");
        assert_eq!(argmax(&[0.1, 0.7, 0.7, -1.0]), 1);
    }
}

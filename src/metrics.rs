//! The field's metrics: confusion matrix, per-class recall, UAR (mean of the per-class recalls)
//! and WAR (overall accuracy), over every clip a test split lists: a clip that could not be
//! scored counts in its class and is never right.

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
    /// Per true class, the clips without a prediction (not scorable): counted wrong.
    #[serde(default)]
    pub unscored: Vec<u64>,
    /// Every clip counted, scored or not.
    pub clips: u64,
}

impl Metrics {
    /// From true labels and predictions (`None`: the clip could not be scored) over `classes`
    /// classes. UAR averages the classes present.
    pub(crate) fn from_predictions(truth: &[usize], predicted: &[Option<usize>], classes: usize) -> Metrics {
        let mut confusion = vec![vec![0u64; classes]; classes];
        let mut unscored = vec![0u64; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            match p {
                Some(p) => confusion[t][p] += 1,
                None => unscored[t] += 1,
            }
        }
        Self::from_confusion(confusion, unscored)
    }

    pub(crate) fn from_confusion(confusion: Vec<Vec<u64>>, unscored: Vec<u64>) -> Metrics {
        let clips: u64 = confusion.iter().flatten().sum::<u64>() + unscored.iter().sum::<u64>();
        let correct: u64 = (0..confusion.len()).map(|i| confusion[i][i]).sum();
        let recall: Vec<Option<f64>> = confusion
            .iter()
            .zip(&unscored)
            .enumerate()
            .map(|(i, (row, &missed))| {
                let n: u64 = row.iter().sum::<u64>() + missed;
                (n > 0).then(|| 100.0 * row[i] as f64 / n as f64)
            })
            .collect();
        let present: Vec<f64> = recall.iter().flatten().copied().collect();
        let uar = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        let war = if clips == 0 { 0.0 } else { 100.0 * correct as f64 / clips as f64 };
        Metrics { uar, war, recall, confusion, unscored, clips }
    }

    /// The confusion matrix as CSV with a header of predicted labels and a row label column;
    /// the last column, `none`, counts each class's clips that could not be scored.
    pub(crate) fn confusion_csv(&self, labels: &[String]) -> String {
        let mut out = format!("true\\predicted,{},none\n", labels.join(","));
        for (i, (name, row)) in labels.iter().zip(&self.confusion).enumerate() {
            let cells: Vec<String> = row.iter().map(|c| c.to_string()).collect();
            out.push_str(&format!("{name},{},{}\n", cells.join(","), self.unscored.get(i).copied().unwrap_or(0)));
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
        let pred = [0, 0, 0, 2, 1, 0, 2, 2, 2, 2].map(Some);
        let m = Metrics::from_predictions(&truth, &pred, 3);
        assert_eq!(m.confusion, vec![vec![3, 0, 1], vec![1, 1, 0], vec![0, 0, 4]]);
        assert_eq!(m.recall, vec![Some(75.0), Some(50.0), Some(100.0)]);
        assert!((m.uar - 75.0).abs() < 1e-12, "(75 + 50 + 100) / 3");
        assert!((m.war - 80.0).abs() < 1e-12, "8 of 10");
        let labels: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        assert_eq!(m.confusion_csv(&labels), "true\\predicted,A,B,C,none\nA,3,0,1,0\nB,1,1,0,0\nC,0,0,4,0\n");
        let absent = Metrics::from_predictions(&[0, 0], &[Some(0), Some(1)], 3);
        assert_eq!(absent.recall, vec![Some(50.0), None, None]);
        assert!((absent.uar - 50.0).abs() < 1e-12, "classes without clips are left out of UAR");
        assert_eq!(argmax(&[0.1, 0.7, 0.7, -1.0]), 1);
    }

    #[test]
    fn clips_without_a_prediction_count_and_are_wrong() {
        // Class 0: 2 clips, 1 right, 1 unscorable; class 1: 2 clips, both right.
        let m = Metrics::from_predictions(&[0, 0, 1, 1], &[Some(0), None, Some(1), Some(1)], 2);
        assert_eq!((m.clips, m.unscored.clone()), (4, vec![1, 0]));
        assert_eq!(m.recall, vec![Some(50.0), Some(100.0)]);
        assert!((m.war - 75.0).abs() < 1e-12 && (m.uar - 75.0).abs() < 1e-12);
        let labels: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        assert_eq!(m.confusion_csv(&labels), "true\\predicted,A,B,none\nA,1,0,1\nB,0,2,0\n");
    }
}

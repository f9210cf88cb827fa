//! The plan as JSON.

use super::Rendered;
use crate::plan::Plan;

pub fn render(plan: &Plan) -> Rendered {
    let mut text = serde_json::to_string_pretty(plan).expect("plan serializes");
    text.push('\n');
    Rendered {
        text,
        warnings: Vec::new(),
    }
}

//! The shape of every benchmark sequence and of every floor chain (`BENCH_SHAPE`): which steps
//! there are and which steps each one waits for. Both sides run the same shape, and every
//! hand-off is measured the same way: from the moment a step's last parent finished to the
//! moment its Job was created.

/// One step: its name (a letter; a sequence's step and Sync are `<letter>-<i>`) and the steps
/// it waits for.
pub struct Step {
    pub name: &'static str,
    pub parents: &'static [&'static str],
}

pub struct Shape {
    /// What `BENCH_SHAPE` names it.
    pub name: &'static str,
    /// In an order where every parent comes before its children; the last is the one sink.
    pub steps: &'static [Step],
}

/// Three steps one after another: the benchmark's case since it began.
pub const CHAIN: Shape = Shape {
    name: "chain",
    steps: &[
        Step {
            name: "a",
            parents: &[],
        },
        Step {
            name: "b",
            parents: &["a"],
        },
        Step {
            name: "c",
            parents: &["b"],
        },
    ],
};

/// A fan-out of two after the root and a join of both: a → b ‖ c → d.
pub const DIAMOND: Shape = Shape {
    name: "diamond",
    steps: &[
        Step {
            name: "a",
            parents: &[],
        },
        Step {
            name: "b",
            parents: &["a"],
        },
        Step {
            name: "c",
            parents: &["a"],
        },
        Step {
            name: "d",
            parents: &["b", "c"],
        },
    ],
};

impl Shape {
    /// `BENCH_SHAPE`: `chain` (the default) or `diamond`.
    pub fn from_env() -> &'static Shape {
        match std::env::var("BENCH_SHAPE").as_deref() {
            Err(_) | Ok("chain") => &CHAIN,
            Ok("diamond") => &DIAMOND,
            Ok(other) => panic!("BENCH_SHAPE={other}: expected chain or diamond"),
        }
    }

    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// The last step: a chain or sequence is done when it is.
    pub fn sink(&self) -> &'static str {
        self.steps.last().expect("a shape has steps").name
    }

    /// The steps that wait for `step`.
    pub fn children<'a>(&self, step: &'a str) -> impl Iterator<Item = &'static Step> + 'a {
        let steps: &'static [Step] = self.steps;
        steps.iter().filter(move |s| s.parents.contains(&step))
    }

    /// The sequence's steps, as `sequence_yaml` takes them: `dependsOn` is written only where
    /// the parents are not the step listed before (a chain's manifest stays the linear one it
    /// always was).
    pub fn sequence_steps(&self, i: usize) -> Vec<(String, String)> {
        let mut previous: Option<&str> = None;
        self.steps
            .iter()
            .map(|s| {
                let implied: Vec<&str> = previous.into_iter().collect();
                previous = Some(s.name);
                let extra = if s.parents == implied.as_slice() {
                    String::new()
                } else {
                    let names: Vec<String> = s.parents.iter().map(|p| format!("{p}-{i}")).collect();
                    format!("    dependsOn: [{}]\n", names.join(", "))
                };
                (format!("{}-{i}", s.name), extra)
            })
            .collect()
    }

    /// The hand-offs of one sequence or chain, in seconds: for each step with parents, from
    /// when the last of them finished to when its Job was created. `at` gives a step's
    /// (created, finished) times; a step without them (not run) gives no sample.
    pub fn handoffs(
        &self,
        at: impl Fn(&str) -> Option<(jiff::Timestamp, Option<jiff::Timestamp>)>,
    ) -> Vec<f64> {
        self.steps
            .iter()
            .filter(|s| !s.parents.is_empty())
            .filter_map(|s| {
                let (created, _) = at(s.name)?;
                let ready = s
                    .parents
                    .iter()
                    .map(|p| at(p).and_then(|(_, finished)| finished))
                    .collect::<Option<Vec<_>>>()?
                    .into_iter()
                    .max()?;
                Some(super::clock::seconds(ready, created))
            })
            .collect()
    }

    /// For each step with two or more children, the spread of its children's creations in
    /// seconds (the last one's minus the first one's): close to zero when one decision
    /// creates them all.
    pub fn fan_out_spreads(&self, at: impl Fn(&str) -> Option<jiff::Timestamp>) -> Vec<f64> {
        self.steps
            .iter()
            .filter_map(|s| {
                let created: Vec<jiff::Timestamp> = self
                    .children(s.name)
                    .map(|c| at(c.name))
                    .collect::<Option<_>>()?;
                if created.len() < 2 {
                    return None;
                }
                let (first, last) = (created.iter().min()?, created.iter().max()?);
                Some(super::clock::seconds(*first, *last))
            })
            .collect()
    }
}

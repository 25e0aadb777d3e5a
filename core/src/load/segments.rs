//! `segments`: named conditions, each compiled once, with reference cycles and nesting depth
//! checked on the graph of references — iteratively and in time linear in the document, so
//! that a chain of 100,000 references or a diamond of shared segments costs what it weighs.

use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::Value;

use super::read::join;
use super::{Loader, MAX_CONDITION_DEPTH};
use crate::condition::Condition;
use crate::condition::Segment;
use crate::document::Flag;
use crate::error::ProblemKind;

/// Segment names to their index, for resolving references.
pub(super) type SegmentNames<'a> = FxHashMap<&'a str, usize>;

/// How many names a cycle message lists before it says how many more there are.
const CYCLE_NAMES_SHOWN: usize = 8;

impl Loader {
    pub(super) fn segments(&mut self, value: &Value) -> Vec<Segment> {
        let Some(object) = self.object("segments", value) else {
            return Vec::new();
        };
        let names: SegmentNames<'_> = object
            .map
            .keys()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i))
            .collect();
        let mut segments = Vec::with_capacity(object.map.len());
        for (name, body) in object.map {
            let path = object.path_of(name);
            if name.is_empty() {
                self.report(
                    &path,
                    ProblemKind::InvalidValue,
                    "segment names must not be empty",
                );
            }
            let condition = self.condition(&path, body, &names);
            segments.push(Segment {
                name: name.as_str().into(),
                // A placeholder never evaluates: the document is rejected when any problem exists.
                condition: condition.unwrap_or(Condition::Any(Vec::new())),
            });
        }
        let order = self.reject_cycles(&segments);
        self.segment_depths = vec![0; segments.len()];
        for index in order {
            let depth = segments[index].condition.depth(&|i| self.segment_depths[i]);
            self.segment_depths[index] = depth;
        }
        for (index, segment) in segments.iter().enumerate() {
            self.check_depth(
                &join("segments", &segment.name),
                &segment.condition,
                Some(index),
            );
        }
        segments
    }

    /// `NESTING_TOO_DEEP` for a condition deeper than the bound, reported only where the bound
    /// is crossed (no segment it references is itself too deep), so a long chain is one problem.
    pub(super) fn check_depth(&mut self, path: &str, condition: &Condition, own: Option<usize>) {
        let depth = match own {
            Some(index) => self.segment_depths[index],
            None => condition.depth(&|i| self.segment_depths.get(i).copied().unwrap_or(0)),
        };
        if depth <= MAX_CONDITION_DEPTH {
            return;
        }
        let mut crossed_here = true;
        condition.for_each_reference(&mut |reference| {
            if self
                .segment_depths
                .get(reference.index)
                .copied()
                .unwrap_or(0)
                > MAX_CONDITION_DEPTH
            {
                crossed_here = false;
            }
        });
        if crossed_here {
            self.report(
                path,
                ProblemKind::NestingTooDeep,
                format!(
                    "conditions nest {depth} levels deep through segment references; the limit is {MAX_CONDITION_DEPTH}"
                ),
            );
        }
    }

    /// Reports every segment on a reference cycle; returns the acyclic segments in an order
    /// where each comes after every segment it references (Tarjan's algorithm, iteratively).
    fn reject_cycles(&mut self, segments: &[Segment]) -> Vec<usize> {
        let edges: Vec<Vec<usize>> = segments
            .iter()
            .map(|segment| {
                let mut targets = Vec::new();
                segment
                    .condition
                    .for_each_reference(&mut |r| targets.push(r.index));
                targets
            })
            .collect();
        let components = strongly_connected(&edges);
        let mut order = Vec::with_capacity(segments.len());
        for component in components {
            let cyclic = component.len() > 1 || edges[component[0]].contains(&component[0]);
            if !cyclic {
                order.push(component[0]);
                continue;
            }
            let cycle = cycle_through(component[0], &component, &edges);
            let position: FxHashMap<usize, usize> =
                cycle.iter().enumerate().map(|(at, &i)| (i, at)).collect();
            let mut members = component.clone();
            members.sort_unstable();
            for member in members {
                // The cycle as seen from this segment when it is on it, else the one found.
                let from = position.get(&member).copied().unwrap_or(0);
                let names = |n: usize| {
                    (0..n)
                        .map(|k| &*segments[cycle[(from + k) % cycle.len()]].name)
                        .collect::<Vec<_>>()
                        .join(" -> ")
                };
                let text = if cycle.len() > CYCLE_NAMES_SHOWN {
                    format!(
                        "{} -> … ({} segments in the cycle)",
                        names(CYCLE_NAMES_SHOWN),
                        component.len()
                    )
                } else {
                    format!("{} -> {}", names(cycle.len()), segments[cycle[from]].name)
                };
                self.report(
                    &join("segments", &segments[member].name),
                    ProblemKind::SegmentCycle,
                    format!("segment references form a cycle: {text}"),
                );
            }
        }
        order
    }
}

/// Tarjan's strongly connected components without recursion; components come out in reverse
/// topological order (a component after every component it references).
fn strongly_connected(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = edges.len();
    let mut index_of = vec![UNSEEN; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut components = Vec::new();
    let mut next = 0;
    // (node, position of the next edge to follow)
    let mut calls: Vec<(usize, usize)> = Vec::new();
    for root in 0..n {
        if index_of[root] != UNSEEN {
            continue;
        }
        calls.push((root, 0));
        while let Some(&mut (node, ref mut edge)) = calls.last_mut() {
            if *edge == 0 && index_of[node] == UNSEEN {
                index_of[node] = next;
                low[node] = next;
                next += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&target) = edges[node].get(*edge) {
                *edge += 1;
                if index_of[target] == UNSEEN {
                    calls.push((target, 0));
                } else if on_stack[target] {
                    low[node] = low[node].min(index_of[target]);
                }
                continue;
            }
            calls.pop();
            if let Some(&(parent, _)) = calls.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == index_of[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// One cycle from `start` back to itself inside its component (breadth-first, linear).
fn cycle_through(start: usize, component: &[usize], edges: &[Vec<usize>]) -> Vec<usize> {
    let members: FxHashSet<usize> = component.iter().copied().collect();
    let mut parent: FxHashMap<usize, usize> = FxHashMap::default();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for &target in &edges[node] {
            if target == start {
                let mut cycle = vec![node];
                while let Some(&up) = parent.get(cycle.last().unwrap_or(&start)) {
                    cycle.push(up);
                }
                if cycle.last() != Some(&start) {
                    cycle.push(start);
                }
                cycle.reverse();
                cycle.dedup();
                return cycle;
            }
            if members.contains(&target) && target != start && !parent.contains_key(&target) {
                parent.insert(target, node);
                queue.push_back(target);
            }
        }
    }
    vec![start]
}

/// Gives each segment that more than one place references a memo slot, so that evaluation
/// decides it once per condition however many paths lead to it.
pub(super) fn share_segments(segments: &mut [Segment], flags: &mut [Flag]) {
    let mut references = vec![0u32; segments.len()];
    let mut count = |r: &crate::condition::SegmentRef| {
        if let Some(n) = references.get_mut(r.index) {
            *n = n.saturating_add(1);
        }
    };
    for segment in segments.iter() {
        segment.condition.for_each_reference(&mut count);
    }
    for rule in flags.iter().flat_map(|f| &f.rules) {
        if let Some(when) = &rule.when {
            when.for_each_reference(&mut count);
        }
    }
    let mut next_slot = 0u32;
    let slots: Vec<Option<u32>> = references
        .iter()
        .map(|&n| {
            (n > 1).then(|| {
                next_slot += 1;
                next_slot - 1
            })
        })
        .collect();
    let mut assign = |r: &mut crate::condition::SegmentRef| {
        r.memo = slots.get(r.index).copied().flatten();
    };
    for segment in segments.iter_mut() {
        segment.condition.for_each_reference_mut(&mut assign);
    }
    for rule in flags.iter_mut().flat_map(|f| &mut f.rules) {
        if let Some(when) = &mut rule.when {
            when.for_each_reference_mut(&mut assign);
        }
    }
}

//! `@username` in a message's content, resolved to `mentions: [user_id]` before the message
//! is queued (from the plaintext, before the store encrypts anything).
//!
//! A mention is `@` followed by a username (`[A-Za-z0-9_.-]`, 3–32 characters), where the `@`
//! does not continue a word: `a@b.c` is an address, not a mention. Names match usernames
//! ignoring case, and only members of the room count; each user is listed once, in order of
//! first mention. Content without `@` costs no query at all (the common case).

use std::collections::HashMap;

use uuid::Uuid;

use crate::store::{Store, StoreResult};

/// Distinct names looked up per message: a message naming more is not a way to make the
/// server query without bound (4000 characters hold ~1000 `@abc`).
pub const MAX_NAMES: usize = 50;

const MIN_LEN: usize = 3;
const MAX_LEN: usize = 32;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// One `@…` of a content: the names it may mean, most specific first. `@bob.` at the end of
/// a sentence may be the user `bob.` or, far more often, `bob` followed by a full stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occurrence(Vec<String>);

/// The occurrences in `content`, names lowercased (usernames are unique ignoring ASCII case).
pub fn occurrences(content: &str) -> Vec<Occurrence> {
    let mut found = Vec::new();
    if !content.contains('@') {
        return found;
    }
    let mut previous: Option<char> = None;
    for (at, c) in content.char_indices() {
        let starts_word =
            previous.is_none_or(|p| !(p.is_alphanumeric() || is_name_char(p) || p == '@'));
        previous = Some(c);
        if c != '@' || !starts_word {
            continue;
        }
        let rest = &content[at + 1..];
        let run_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        let run = &rest[..run_len];
        // `@name` glued to a letter outside the username alphabet (`@bobé`) is not `@bob`.
        if rest[run_len..]
            .chars()
            .next()
            .is_some_and(char::is_alphanumeric)
        {
            continue;
        }
        let mut names = Vec::new();
        for candidate in [run, run.trim_end_matches(['.', '-'])] {
            if (MIN_LEN..=MAX_LEN).contains(&candidate.len())
                && !names
                    .iter()
                    .any(|n: &String| n.eq_ignore_ascii_case(candidate))
            {
                names.push(candidate.to_ascii_lowercase());
            }
        }
        if !names.is_empty() {
            found.push(Occurrence(names));
        }
    }
    found
}

/// The members of `room_id` that `content` mentions, each once, in order of first mention.
pub async fn resolve(store: &Store, room_id: Uuid, content: &str) -> StoreResult<Vec<Uuid>> {
    let found = occurrences(content);
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::new();
    for name in found.iter().flat_map(|o| o.0.iter()) {
        if !names.contains(name) && names.len() < MAX_NAMES {
            names.push(name.clone());
        }
    }
    let members: HashMap<String, Uuid> = store
        .members_named(room_id, &names)
        .await?
        .into_iter()
        .collect();
    Ok(pick(&found, &members))
}

/// For each occurrence its most specific name that is a member; each user once.
fn pick(found: &[Occurrence], members: &HashMap<String, Uuid>) -> Vec<Uuid> {
    let mut mentioned = Vec::new();
    for occurrence in found {
        if let Some(id) = occurrence.0.iter().find_map(|name| members.get(name))
            && !mentioned.contains(id)
        {
            mentioned.push(*id);
        }
    }
    mentioned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(content: &str) -> Vec<Vec<String>> {
        occurrences(content).into_iter().map(|o| o.0).collect()
    }

    #[test]
    fn mentions_start_a_word_and_are_case_insensitive() {
        assert_eq!(names("hi @Bob and @carol!"), [vec!["bob"], vec!["carol"]]);
        assert_eq!(names("@bob: look"), [vec!["bob"]]);
        assert!(names("mail a@b.c or bob@example.com").is_empty());
        assert!(names("no at sign").is_empty());
        assert!(names("@ab is too short, @@bob is not one").is_empty());
        assert!(names(&format!("@{}", "x".repeat(33))).is_empty());
        assert!(names("@bobé").is_empty());
        assert_eq!(names("(@bob)"), [vec!["bob"]]);
        assert_eq!(names("thanks @bob."), [vec!["bob.", "bob"]]);
        assert_eq!(names("é@bob"), Vec::<Vec<String>>::new());
    }

    #[test]
    fn each_member_once_and_the_most_specific_name_wins() {
        let (bob, dot) = (Uuid::now_v7(), Uuid::now_v7());
        let members = HashMap::from([("bob".to_owned(), bob), ("bob.".to_owned(), dot)]);
        assert_eq!(pick(&occurrences("@bob. @BOB @bob"), &members), [dot, bob]);
        let only_bob = HashMap::from([("bob".to_owned(), bob)]);
        assert_eq!(pick(&occurrences("@bob. and @nobody"), &only_bob), [bob]);
    }
}

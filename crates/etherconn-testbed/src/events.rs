//! [`EventLog`]: a `tracing` subscriber that keeps every event it is given, for tests that
//! check what the library tells a subscriber (which events, at which level, with which
//! fields). A few dozen lines rather than `tracing-subscriber`: the tests need the events as
//! data, not formatted output.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    /// Its level.
    pub level: Level,
    /// Its target (the module path of the code that emitted it, unless set).
    pub target: String,
    /// Its message.
    pub message: String,
    /// Its other fields, in order, as `name` and value (`Debug` form; strings as they are).
    pub fields: Vec<(String, String)>,
}

impl LoggedEvent {
    /// The value of field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A subscriber that records every event up to `max` in a shared list; clones share it.
#[derive(Debug, Clone)]
pub struct EventLog {
    max: Level,
    events: Arc<Mutex<Vec<LoggedEvent>>>,
}

impl EventLog {
    /// A log of the events at `max` and more severe.
    pub fn new(max: Level) -> EventLog {
        EventLog {
            max,
            events: Arc::default(),
        }
    }

    /// The events recorded so far.
    pub fn events(&self) -> Vec<LoggedEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The events recorded so far whose message is `message`.
    pub fn with_message(&self, message: &str) -> Vec<LoggedEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }
}

struct Fields<'a>(&'a mut LoggedEvent);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.0.message = value;
        } else {
            self.0.fields.push((field.name().to_owned(), value));
        }
    }
}

impl Subscriber for EventLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        // More verbose levels compare greater.
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut logged = LoggedEvent {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: String::new(),
            fields: Vec::new(),
        };
        event.record(&mut Fields(&mut logged));
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(logged);
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

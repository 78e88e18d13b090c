//! The clients of one engine thread. Each client (an [`EngineHandle`](super::EngineHandle) and its clones) has its
//! own event stream, its own engine settings and its own jobs; the engine thread reaches a job's client through
//! the job, and every connected client through [`Clients`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam::channel::Sender;
use parking_lot::Mutex;

use super::events::Event;
use super::thread::EngineConfig;

/// One client as the engine thread sees it.
pub(super) struct ClientLink {
    /// Unique among the engine's clients, never reused.
    pub id: u64,
    /// Where this client's jobs' events go.
    pub events: Sender<Event>,
    /// Set when the client's last handle is dropped: its waiting jobs are cancelled and its running job stops at
    /// its next step or tile.
    gone: AtomicBool,
    /// The settings its next submits carry.
    settings: Mutex<ClientSettings>,
}

/// A client's engine settings and, when known, why their VRAM budget is refused.
struct ClientSettings {
    config: Arc<EngineConfig>,
    budget_refusal: Option<String>,
}

impl ClientLink {
    pub fn new(id: u64, events: Sender<Event>, config: EngineConfig, budget_refusal: Option<String>) -> Self {
        Self {
            id,
            events,
            gone: AtomicBool::new(false),
            settings: Mutex::new(ClientSettings { config: Arc::new(config), budget_refusal }),
        }
    }

    /// The settings for a new job, or the refusal of their budget.
    pub fn config_for_job(&self) -> Result<Arc<EngineConfig>, String> {
        let settings = self.settings.lock();
        match &settings.budget_refusal {
            Some(refusal) => Err(refusal.clone()),
            None => Ok(settings.config.clone()),
        }
    }

    /// Replaces the settings of later submits; jobs already submitted keep theirs.
    pub fn set_config(&self, config: EngineConfig, budget_refusal: Option<String>) {
        *self.settings.lock() = ClientSettings { config: Arc::new(config), budget_refusal };
    }

    /// Refuses later submits with `refusal` while the client still has the settings `config` whose budget the
    /// engine found too small.
    pub fn refuse_budget(&self, config: &Arc<EngineConfig>, refusal: String) {
        let mut settings = self.settings.lock();
        if Arc::ptr_eq(&settings.config, config) {
            settings.budget_refusal = Some(refusal);
        }
    }

    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub fn leave(&self) {
        self.gone.store(true, Ordering::Release);
    }
}

/// The connected clients, for the events that concern them all.
#[derive(Clone, Default)]
pub(super) struct Clients(Arc<Mutex<Vec<Arc<ClientLink>>>>);

impl Clients {
    pub fn add(&self, client: Arc<ClientLink>) {
        self.0.lock().push(client);
    }

    pub fn remove(&self, id: u64) {
        self.0.lock().retain(|client| client.id != id);
    }

    pub fn count(&self) -> usize {
        self.0.lock().len()
    }

    /// Sends `event` to every connected client: model loading and warnings concern every client of the engine,
    /// whichever job caused them.
    pub fn broadcast(&self, event: &Event) {
        for client in self.0.lock().iter() {
            let _ = client.events.send(event.clone());
        }
    }
}

//! What the worker can run: each area registers its task kinds and periodic jobs here (at
//! start-up, from `startup`), so the queue knows no area. A task is stored as
//! `{"task": NAME, ...its fields}`: the name is fixed per kind, so renaming a Rust type never
//! orphans a queued task.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use apalis::prelude::BoxDynError;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A kind of background task: its name in the queue's table and its fields.
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The `task` field of the stored JSON.
    const NAME: &'static str;
}

/// A task as the queue stores it (`{"task": NAME, ...fields}`). Its fields may hold sealed
/// secrets, so it is never logged: only its [`kind`](Queued::kind) is.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Queued(Map<String, Value>);

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queued({})", self.kind())
    }
}

const KIND: &str = "task";

impl Queued {
    pub fn new<T: Task>(task: &T) -> Result<Self, String> {
        let mut fields = match serde_json::to_value(task).map_err(|e| e.to_string())? {
            Value::Object(fields) => fields,
            Value::Null => Map::new(),
            other => return Err(format!("a task is a struct, not {other}")),
        };
        fields.insert(KIND.into(), Value::String(T::NAME.into()));
        Ok(Self(fields))
    }

    /// The task's kind, as registered (`"?"` for a row without one).
    pub fn kind(&self) -> &str {
        self.0.get(KIND).and_then(Value::as_str).unwrap_or("?")
    }

    fn fields<T: Task>(&self) -> Result<T, BoxDynError> {
        let mut fields = self.0.clone();
        fields.remove(KIND);
        let empty = fields.is_empty();
        match serde_json::from_value(Value::Object(fields)) {
            // A unit struct was stored as its name alone.
            Err(_) if empty => Ok(serde_json::from_value(Value::Null)?),
            other => Ok(other?),
        }
    }
}

type Handler<Ctx> =
    Arc<dyn Fn(Queued, Ctx) -> BoxFuture<'static, Result<(), BoxDynError>> + Send + Sync>;

/// A job run on a cron schedule (`sec min hour day month weekday`, in the office's timezone).
pub struct Periodic<Ctx> {
    pub name: &'static str,
    pub schedule: &'static str,
    pub run: fn(Ctx) -> BoxFuture<'static, Result<(), BoxDynError>>,
}

impl<Ctx> Clone for Periodic<Ctx> {
    fn clone(&self) -> Self {
        Self { ..*self }
    }
}

/// The task kinds and periodic jobs of every area, run with the context `Ctx` (the
/// application state).
pub struct Registry<Ctx> {
    handlers: HashMap<&'static str, Handler<Ctx>>,
    periodic: Vec<Periodic<Ctx>>,
}

impl<Ctx> Default for Registry<Ctx> {
    fn default() -> Self {
        Self {
            handlers: HashMap::new(),
            periodic: Vec::new(),
        }
    }
}

impl<Ctx: Clone + Send + Sync + 'static> Registry<Ctx> {
    /// Runs `run` for every queued task of kind `T`.
    pub fn task<T, F, Fut>(&mut self, run: F) -> &mut Self
    where
        T: Task,
        F: Fn(T, Ctx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BoxDynError>> + Send + 'static,
    {
        let run = Arc::new(run);
        let handler: Handler<Ctx> = Arc::new(move |queued: Queued, ctx: Ctx| {
            let run = run.clone();
            Box::pin(async move { run(queued.fields::<T>()?, ctx).await })
        });
        let previous = self.handlers.insert(T::NAME, handler);
        assert!(previous.is_none(), "task {} registered twice", T::NAME);
        self
    }

    /// Runs `job` on its schedule.
    pub fn periodic(&mut self, job: Periodic<Ctx>) -> &mut Self {
        self.periodic.push(job);
        self
    }

    pub fn periodic_jobs(&self) -> &[Periodic<Ctx>] {
        &self.periodic
    }

    /// Runs a queued task with its kind's handler; an unknown kind is an error (kept, retried).
    pub async fn run(&self, task: Queued, ctx: Ctx) -> Result<(), BoxDynError> {
        let handler = self
            .handlers
            .get(task.kind())
            .ok_or_else(|| format!("no handler for task kind {:?}", task.kind()))?
            .clone();
        handler(task, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Ingest {
        path: String,
    }
    impl Task for Ingest {
        const NAME: &'static str = "ingest_file";
    }

    #[derive(Serialize, Deserialize)]
    struct Rescan;
    impl Task for Rescan {
        const NAME: &'static str = "rescan_folder";
    }

    #[test]
    fn a_task_is_stored_as_its_name_and_fields_as_before() {
        let queued = Queued::new(&Ingest { path: "x".into() }).unwrap();
        let stored: Value = serde_json::to_value(&queued).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"task": "ingest_file", "path": "x"})
        );
        assert_eq!(
            serde_json::to_value(Queued::new(&Rescan).unwrap()).unwrap(),
            serde_json::json!({"task": "rescan_folder"})
        );
        // A row written before tasks were registered by the areas reads the same.
        let old: Queued = serde_json::from_str(r#"{"task":"ingest_file","path":"x"}"#).unwrap();
        assert_eq!(old.kind(), "ingest_file");
        assert_eq!(old.fields::<Ingest>().unwrap(), Ingest { path: "x".into() });
        assert_eq!(format!("{old:?}"), "Queued(ingest_file)");
    }

    #[tokio::test]
    async fn each_kind_runs_its_handler_and_an_unknown_kind_is_an_error() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut registry = Registry::<Arc<std::sync::Mutex<Vec<String>>>>::default();
        registry.task(
            |t: Ingest, seen: Arc<std::sync::Mutex<Vec<String>>>| async move {
                seen.lock().unwrap().push(t.path);
                Ok(())
            },
        );
        registry
            .run(
                Queued::new(&Ingest { path: "a".into() }).unwrap(),
                seen.clone(),
            )
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), vec!["a".to_owned()]);
        let err = registry
            .run(Queued::new(&Rescan).unwrap(), seen.clone())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("rescan_folder"), "{err}");
        registry.task(
            |_: Rescan, seen: Arc<std::sync::Mutex<Vec<String>>>| async move {
                seen.lock().unwrap().push("rescan".into());
                Ok(())
            },
        );
        registry
            .run(Queued::new(&Rescan).unwrap(), seen.clone())
            .await
            .unwrap();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}

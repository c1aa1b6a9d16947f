//! PostgreSQL knowledge: the only code that reads PostgreSQL's own files and
//! formats. It knows nothing of repositories, storage or commands.

pub mod backup_api;
pub mod backup_label;
pub mod binaries;
pub mod control;
pub mod datadir;
pub mod discovery;
pub mod history;
pub mod lsn;
pub mod page;
pub mod pidfile;
pub mod recovery;
pub mod server;
pub mod standby;
pub mod standby_params;
pub mod version;
pub mod walheader;
pub mod walname;

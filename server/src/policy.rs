//! Policy: who may do what. It sits in every request path from day one. `Enforcing` (the
//! default) allows a tenant principal only its own tenant's resources and admin actions only
//! to the admin; `Permissive` additionally lets the admin read any tenant's resources (for
//! operators), but never lets one tenant reach another's. Tenancy itself is structural: every
//! lookup is keyed by the principal's tenant, whatever the policy says.

use crate::auth::Principal;
use crate::error::AppError;

/// How strict the policy is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Tenants reach only their own resources; admin actions need the admin token.
    #[default]
    Enforcing,
    /// As enforcing, and the admin may also read tenants' resources.
    Permissive,
}

/// What a request wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Manage tenants and tokens, read the digest.
    Administer,
    /// Read node-wide figures (metrics, capabilities).
    ReadNode,
    /// Read or change a tenant's own resources.
    TenantResource,
}

/// The policy in force.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    pub mode: Mode,
}

impl Policy {
    /// Allows or refuses `action` to `principal`.
    pub fn check(&self, principal: &Principal, action: Action) -> Result<(), AppError> {
        match (principal, action) {
            (Principal::Admin, Action::Administer | Action::ReadNode) => Ok(()),
            (Principal::Admin, Action::TenantResource) if self.mode == Mode::Permissive => Ok(()),
            (Principal::Tenant(_), Action::ReadNode | Action::TenantResource) => Ok(()),
            _ => Err(AppError::unauthorized()),
        }
    }
}

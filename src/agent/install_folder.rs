//! The folder the agent's `.exe` is installed in (`%ProgramData%\CertHubAgent\publish`, the
//! runbook's path, started by HKCU Run and the 18:00 task): only its owner may write there, or
//! another local user could plant a DLL beside the `.exe`, or swap it, and run as the victim at
//! logon. The folder is made with a protected DACL (the user, SYSTEM, Administrators; nothing
//! inherited from `%ProgramData%`, where every user may create folders), and a folder that
//! already exists is used only when its owner is one of those.

/// SYSTEM.
pub const SYSTEM_SID: &str = "S-1-5-18";
/// BUILTIN\Administrators.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";

/// Why a folder that is already there is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{folder} já existe e pertence a outra conta ({owner}): o agente não se instala numa pasta que outra pessoa pode alterar. Um administrador deve apagá-la; depois rode a instalação de novo."
)]
pub struct ForeignFolder {
    pub folder: String,
    pub owner: String,
}

/// Whether the agent of the user `user_sid` may install into `folder`, which exists and is
/// owned by `owner_sid`: the user's own folder, or one SYSTEM or the Administrators own (made
/// by an administrator's deployment), and nobody else's.
pub fn may_install_into(
    folder: &str,
    owner_sid: &str,
    user_sid: &str,
) -> Result<(), ForeignFolder> {
    let trusted = [user_sid, SYSTEM_SID, ADMINISTRATORS_SID];
    if trusted.iter().any(|t| t.eq_ignore_ascii_case(owner_sid)) {
        Ok(())
    } else {
        Err(ForeignFolder {
            folder: folder.to_owned(),
            owner: owner_sid.to_owned(),
        })
    }
}

/// The folder's security descriptor: owned by the user, full control for the user, SYSTEM and
/// the Administrators, inherited by what is created inside (`OICI`), and protected (`P`):
/// nothing inherited from the parent.
pub fn protected_sddl(user_sid: &str) -> String {
    format!("O:{user_sid}D:P(A;OICI;FA;;;{user_sid})(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";
    const BOB: &str = "S-1-5-21-1004336348-1177238915-682003330-1002";

    #[test]
    fn a_folder_made_by_another_account_is_refused() {
        let folder = r"C:\ProgramData\CertHubAgent\publish";
        let refused = may_install_into(folder, BOB, ALICE).unwrap_err();
        assert_eq!(refused.owner, BOB);
        let message = refused.to_string();
        assert!(
            message.contains(folder) && message.contains("outra conta"),
            "{message}"
        );
        // Everyone and the Users group may create folders in %ProgramData%: not trusted either.
        assert!(may_install_into(folder, "S-1-1-0", ALICE).is_err());
        assert!(may_install_into(folder, "S-1-5-32-545", ALICE).is_err());
    }

    #[test]
    fn the_users_own_folder_and_an_administrators_one_are_used() {
        let folder = r"C:\ProgramData\CertHubAgent";
        assert_eq!(may_install_into(folder, ALICE, ALICE), Ok(()));
        assert_eq!(
            may_install_into(folder, &ALICE.to_lowercase(), ALICE),
            Ok(())
        );
        assert_eq!(may_install_into(folder, SYSTEM_SID, ALICE), Ok(()));
        assert_eq!(may_install_into(folder, ADMINISTRATORS_SID, ALICE), Ok(()));
    }

    #[test]
    fn the_descriptor_is_protected_and_names_three_accounts() {
        let sddl = protected_sddl(ALICE);
        assert!(sddl.starts_with(&format!("O:{ALICE}D:P(")), "{sddl}");
        assert_eq!(sddl.matches("(A;OICI;FA;;;").count(), 3, "{sddl}");
        assert!(
            !sddl.contains(";;;WD)") && !sddl.contains(";;;BU)"),
            "{sddl}"
        );
    }
}

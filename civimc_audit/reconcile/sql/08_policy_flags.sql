-- Step 8 — the policy option honor_civicrm_consent, then the flags (DESIGN "Flags").
-- Policy (off by default, so the default predicts the sync extension, which ignores the consent
-- fields): a consent conflict becomes unsubscribe_in_mailchimp where the member is MC-in
-- (R1, R3, R5) and no_change where the rule would add or resubscribe (R6, R7). cannot_sync
-- stays as it is: there is nothing to send either way.
-- Flags never change the outcome:
--   consent_conflict    do_not_email / is_opt_out / is_deceased, yet the rule would leave or make
--                       them subscribed at Mailchimp (R1, R3, R5, R6, R7)
--   duplicate_contacts  the address has more than one live owner (matching rule, R6)
--   contact_deleted     the member's address belongs to a trashed contact
--   civicrm_pending     the group_contact row or the latest history row is Pending
--   no_civicrm_history  in the group's table but no history: the sync never acts on these
--   needs_confirmation  R7 for an unsubscribed member, when a resubscribe is planned: Mailchimp
--                       refuses "subscribed" (compliance state), only "pending" is possible
--   email_differs       the member's address is not the contact's best email
--   profile_edit_decided  (step 6) Mailchimp's status changed no later than CiviCRM's date; its
--                       later last_changed was a profile edit (R2/R3 by last_changed)
--   status_change_unknown a row that needs date evidence (step 7b) whose activity feed could not
--                       be read, or was not read for this pair of snapshots
CREATE OR REPLACE TEMP VIEW flagged AS
WITH f AS (
    SELECT r.*,
        consent_withheld AND (
            rule_outcome IN ('add_to_mailchimp', 'resubscribe_in_mailchimp')
            OR (mc_in AND rule_outcome IN ('no_change', 'add_to_civicrm_group'))
        ) AS consent_conflict,
        coalesce(contact_id IS NOT NULL AND gc_status IS NOT NULL AND NOT has_history, false)
            AS no_civicrm_history,
        coalesce(gc_status = 'Pending' OR history_status = 'Pending', false) AS civicrm_pending,
        coalesce(has_member AND best_norm <> member_norm, false) AS email_differs,
        needs_evidence AND rule IN ('R2', 'R3') AND evidence_state IS DISTINCT FROM 'read'
            AS status_change_unknown
    FROM evidenced r
), o AS (
    SELECT f.*,
        getvariable('honor_civicrm_consent') AND consent_conflict AS consent_applied,
        CASE
            WHEN getvariable('honor_civicrm_consent') AND consent_conflict AND mc_in
                THEN 'unsubscribe_in_mailchimp'
            WHEN getvariable('honor_civicrm_consent') AND consent_conflict THEN 'no_change'
            ELSE rule_outcome
        END AS outcome
    FROM f
)
SELECT o.*,
    (outcome = 'resubscribe_in_mailchimp' AND mailchimp_status = 'unsubscribed')
        AS needs_confirmation,
    concat_ws(' ',
        CASE WHEN duplicate_contacts THEN 'duplicate_contacts' END,
        CASE WHEN contact_deleted THEN 'contact_deleted' END,
        CASE WHEN consent_conflict THEN 'consent_conflict' END,
        CASE WHEN civicrm_pending THEN 'civicrm_pending' END,
        CASE WHEN no_civicrm_history THEN 'no_civicrm_history' END,
        CASE WHEN outcome = 'resubscribe_in_mailchimp' AND mailchimp_status = 'unsubscribed'
             THEN 'needs_confirmation' END,
        CASE WHEN email_differs THEN 'email_differs' END,
        CASE WHEN profile_edit_decided THEN 'profile_edit_decided' END,
        CASE WHEN status_change_unknown THEN 'status_change_unknown' END
    ) AS flags
FROM o;

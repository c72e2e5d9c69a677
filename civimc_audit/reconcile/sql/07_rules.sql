-- Step 7 — the rules table R1–R10 (DESIGN "The rules") and its cannot_sync exceptions.
--   R1  Mailchimp wins, Civi-in,  MC-in            -> no_change
--   R2  Mailchimp wins, Civi-in,  MC-out           -> remove_from_civicrm_group
--                                                     (cannot_sync other_email_subscribed)
--   R3  Mailchimp wins, Civi-out, MC-in            -> add_to_civicrm_group (new contact if none)
--   R4  Mailchimp wins, Civi-out, MC-out           -> no_change
--   R5  CiviCRM wins,   Civi-in,  MC-in            -> no_change
--   R6  CiviCRM wins,   Civi-in,  MC-absent        -> add_to_mailchimp
--                                                     (cannot_sync no_usable_email,
--                                                      email_shared_with_other_contact: the
--                                                      address is a member matched to another
--                                                      contact, or a lower-id contact in the
--                                                      group gets it added)
--   R7  CiviCRM wins,   Civi-in,  unsubscribed/archived/transactional
--                                                  -> resubscribe_in_mailchimp
--                                                     (cannot_sync email_on_hold)
--   R8  CiviCRM wins,   Civi-in,  cleaned          -> cannot_sync cleaned_at_mailchimp
--   R9  CiviCRM wins,   Civi-out, MC-in            -> unsubscribe_in_mailchimp
--                                                     (cannot_sync other_email_subscribed when
--                                                      another member of the contact is MC-in
--                                                      and wins: its row is R3)
--   R10 CiviCRM wins,   Civi-out, MC-out / absent  -> no_change
-- A member with no matching contact is Civi-out (R3/R4); Mailchimp always wins it (step 6).
-- A member record the rules cannot read safely (step 1's member_defect: no_member_id,
-- no_member_email, unknown_member_status, no_member_change_date) makes any of R1–R10
-- cannot_sync with the defect as reason_code, before every other exception.
-- no_history_date: the contact's newest history row (by id) has no usable date, so which side
-- is later is unknown; Mailchimp wins as with no history, but R2 (a removal) and R3 (an addition)
-- become cannot_sync rather than act on an unknown date. R1/R4 agree and need nothing.
CREATE OR REPLACE TEMP VIEW ruled AS
WITH r AS (
    SELECT d.*,
        CASE
            WHEN winner = 'mailchimp' AND civi_in AND mc_in THEN 'R1'
            WHEN winner = 'mailchimp' AND civi_in THEN 'R2'
            WHEN winner = 'mailchimp' AND mc_in THEN 'R3'
            WHEN winner = 'mailchimp' THEN 'R4'
            WHEN civi_in AND mc_in THEN 'R5'
            WHEN civi_in AND NOT has_member THEN 'R6'
            WHEN civi_in AND mailchimp_status IN ('unsubscribed', 'archived', 'transactional')
                THEN 'R7'
            WHEN civi_in THEN 'R8'  -- cleaned, or a status Mailchimp may add later
            WHEN mc_in THEN 'R9'
            ELSE 'R10'
        END AS rule
    FROM decided d
), x AS (
    SELECT r.*,
        CASE
            WHEN member_defect IS NOT NULL THEN member_defect
            WHEN rule IN ('R2', 'R3') AND history_undated THEN 'no_history_date'
            WHEN rule = 'R2' AND other_member_in THEN 'other_email_subscribed'
            WHEN rule = 'R6' AND best_email IS NULL THEN 'no_usable_email'
            WHEN rule = 'R6' AND (best_email_is_member OR best_email_added_for_other)
                THEN 'email_shared_with_other_contact'
            WHEN rule = 'R7' AND member_on_hold THEN 'email_on_hold'
            WHEN rule = 'R8' THEN 'cleaned_at_mailchimp'
            WHEN rule = 'R9' AND other_in_wins THEN 'other_email_subscribed'
        END AS reason_code
    FROM r
)
SELECT x.*,
    CASE
        WHEN reason_code IS NOT NULL THEN 'cannot_sync'
        WHEN rule IN ('R1', 'R4', 'R5', 'R10') THEN 'no_change'
        WHEN rule = 'R2' THEN 'remove_from_civicrm_group'
        WHEN rule = 'R3' THEN 'add_to_civicrm_group'
        WHEN rule = 'R6' THEN 'add_to_mailchimp'
        WHEN rule = 'R7' THEN 'resubscribe_in_mailchimp'
        WHEN rule = 'R9' THEN 'unsubscribe_in_mailchimp'
    END AS rule_outcome
FROM x;
